package httpsig

import (
	"fmt"
	"strings"
	"time"
)

// ParseDate reads the value of a signed Date (or X-Date) header in any of
// the forms real CloudAPI clients send. CloudAPI verifies with Joyent's
// node http-signature library, which reads the date with JavaScript's
// new Date(...): so the triton CLI and smartdc send the HTTP form ending in
// "GMT", and triton-go sends Go's time.RFC1123 of a UTC time, which ends in
// "UTC". Both must be read, and so must the other forms Date.parse takes
// from such clients:
//
//   - RFC 1123 / RFC 5322: "Thu, 03 Dec 2026 10:00:00 GMT", the day name
//     optional and the day of the month one or two digits;
//   - RFC 850: "Thursday, 03-Dec-26 10:00:00 GMT";
//   - ANSI C asctime: "Thu Dec  3 10:00:00 2026", which HTTP defines as GMT;
//   - ISO 8601 / RFC 3339: "2026-12-03T10:00:00Z", with optional fractional
//     seconds, 'T' or a space between date and time.
//
// In the first two the zone is GMT, UTC, UT, Z, a numeric offset (+0100 or
// +01:00), or one of the North American names RFC 5322 still defines (EST,
// EDT, CST, CDT, MST, MDT, PST, PDT), which is what Go's time.RFC1123 writes
// for a local time there; other zone names are refused, as Date.parse
// refuses them. A date without a zone or offset is read as UTC, as CloudAPI
// (whose servers keep UTC) reads it.
//
// Unlike http-signature, which lets an unreadable date through because its
// skew check compares NaN, anything else is an error: a date that cannot
// be read cannot be shown to be recent.
func ParseDate(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("httpsig: empty date")
	}
	if len(s) >= 5 && isDigit(s[0]) && s[4] == '-' {
		return parseISODate(s)
	}
	// asctime carries no zone; HTTP defines it as GMT.
	if t, err := time.Parse(time.ANSIC, s); err == nil {
		return t, nil
	}
	// A zone, when there is one, is the last field; without one, UTC
	// (see above).
	rest, offset := s, time.Duration(0)
	if i := strings.LastIndexByte(s, ' '); i >= 0 {
		if d, ok := zoneOffset(s[i+1:]); ok {
			rest, offset = strings.TrimRight(s[:i], " "), d
		}
	}
	for _, layout := range []string{
		"Mon, 2 Jan 2006 15:04:05",    // RFC 1123, RFC 5322
		"2 Jan 2006 15:04:05",         // RFC 5322 without the day name
		"Monday, 2-Jan-06 15:04:05",   // RFC 850
		"Monday, 2 Jan 2006 15:04:05", // RFC 1123 with the full day name
		"Mon, 2-Jan-06 15:04:05",      // RFC 850 with the short day name
	} {
		if t, err := time.Parse(layout, rest); err == nil {
			return t.Add(-offset), nil
		}
	}
	return time.Time{}, fmt.Errorf("httpsig: unreadable date %q", s)
}

// parseISODate reads the ISO 8601 / RFC 3339 forms of ParseDate.
func parseISODate(s string) (time.Time, error) {
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	for _, layout := range []string{
		"2006-01-02T15:04:05.999999999Z07:00",
		"2006-01-02T15:04:05.999999999Z0700",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	// No offset: UTC (see ParseDate).
	if t, err := time.Parse("2006-01-02T15:04:05.999999999", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("httpsig: unreadable date %q", s)
}

// namedZones are the zone names ParseDate reads: the ones RFC 5322 defines
// (and Date.parse reads), and "UTC", which Go writes.
var namedZones = map[string]time.Duration{
	"GMT": 0, "UTC": 0, "UT": 0, "Z": 0,
	"EST": -5 * time.Hour, "EDT": -4 * time.Hour,
	"CST": -6 * time.Hour, "CDT": -5 * time.Hour,
	"MST": -7 * time.Hour, "MDT": -6 * time.Hour,
	"PST": -8 * time.Hour, "PDT": -7 * time.Hour,
}

// zoneOffset reads a zone name or a numeric offset, +hhmm or +hh:mm.
func zoneOffset(z string) (time.Duration, bool) {
	if d, ok := namedZones[strings.ToUpper(z)]; ok {
		return d, true
	}
	if len(z) == 6 && z[3] == ':' {
		z = z[:3] + z[4:]
	}
	if len(z) != 5 || (z[0] != '+' && z[0] != '-') {
		return 0, false
	}
	for i := 1; i < 5; i++ {
		if !isDigit(z[i]) {
			return 0, false
		}
	}
	h, m := int(z[1]-'0')*10+int(z[2]-'0'), int(z[3]-'0')*10+int(z[4]-'0')
	if h > 23 || m > 59 {
		return 0, false
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	if z[0] == '-' {
		d = -d
	}
	return d, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
