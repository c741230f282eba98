package httpsig_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

func TestParseDate(t *testing.T) {
	// 10:00:00 UTC on a Thursday; every accepted form below says this
	// instant, in its own way.
	want := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	ok := []struct{ name, value string }{
		{"RFC1123GMT", "Thu, 03 Dec 2026 10:00:00 GMT"}, // triton CLI, smartdc, http.TimeFormat
		{"RFC1123UTC", "Thu, 03 Dec 2026 10:00:00 UTC"}, // triton-go: time.Now().UTC().Format(time.RFC1123)
		{"RFC1123UT", "Thu, 03 Dec 2026 10:00:00 UT"},
		{"RFC1123Z", "Thu, 03 Dec 2026 10:00:00 Z"},
		{"RFC1123LowerCaseZone", "Thu, 03 Dec 2026 10:00:00 gmt"},
		{"RFC1123NumericZone", "Thu, 03 Dec 2026 11:00:00 +0100"}, // time.RFC1123Z
		{"RFC1123NegativeZone", "Thu, 03 Dec 2026 05:30:00 -0430"},
		{"RFC1123ColonZone", "Thu, 03 Dec 2026 11:00:00 +01:00"},
		{"RFC1123EST", "Thu, 03 Dec 2026 05:00:00 EST"}, // time.RFC1123 of a local time in New York
		{"RFC1123PDT", "Thu, 03 Dec 2026 03:00:00 PDT"},
		{"RFC1123OneDigitDay", "Thu, 3 Dec 2026 10:00:00 GMT"},
		{"RFC1123FullDayName", "Thursday, 03 Dec 2026 10:00:00 GMT"},
		{"RFC5322NoDayName", "3 Dec 2026 10:00:00 GMT"},
		{"RFC1123WrongDayName", "Mon, 03 Dec 2026 10:00:00 GMT"}, // Date.parse ignores it too
		{"RFC1123Padded", "  Thu, 03 Dec 2026 10:00:00 GMT "},
		{"RFC850", "Thursday, 03-Dec-26 10:00:00 GMT"},
		{"RFC850UTC", "Thursday, 03-Dec-26 10:00:00 UTC"}, // time.RFC850 of a UTC time
		{"RFC850ShortDayName", "Thu, 03-Dec-26 10:00:00 GMT"},
		{"ANSIC", "Thu Dec  3 10:00:00 2026"},
		{"ANSICTwoDigitDay", "Thu Dec 03 10:00:00 2026"},
		{"RFC3339", "2026-12-03T10:00:00Z"},
		{"RFC3339Offset", "2026-12-03T11:00:00+01:00"},
		{"RFC3339Fraction", "2026-12-03T10:00:00.000Z"}, // JavaScript's toISOString
		{"ISO8601BasicOffset", "2026-12-03T11:00:00+0100"},
		{"ISO8601Space", "2026-12-03 10:00:00Z"},
		{"ISO8601NoOffset", "2026-12-03T10:00:00"},
		{"RFC1123NoZone", "Thu, 03 Dec 2026 10:00:00"},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := httpsig.ParseDate(tt.value)
			if err != nil {
				t.Fatalf("ParseDate(%q): %v", tt.value, err)
			}
			if !got.Equal(want) {
				t.Errorf("ParseDate(%q) = %v, want %v", tt.value, got, want)
			}
		})
	}

	bad := []struct{ name, value string }{
		{"Empty", ""},
		{"Garbage", "yesterday"},
		{"Unix", "1796378400"},
		{"UnknownZone", "Thu, 03 Dec 2026 10:00:00 CET"}, // Date.parse refuses it too
		{"ZoneOutOfRange", "Thu, 03 Dec 2026 10:00:00 +2400"},
		{"ZoneShort", "Thu, 03 Dec 2026 10:00:00 +01"},
		{"NoSeconds", "Thu, 03 Dec 2026 10:00 GMT"},
		{"BadDay", "Thu, 32 Dec 2026 10:00:00 GMT"},
		{"BadMonth", "Thu, 03 Foo 2026 10:00:00 GMT"},
		{"BadHour", "Thu, 03 Dec 2026 25:00:00 GMT"},
		{"TrailingText", "Thu, 03 Dec 2026 10:00:00 GMT x"},
		{"ISODateOnly", "2026-12-03"},
		{"ISOBadOffset", "2026-12-03T10:00:00+1"},
		{"ANSICWithZone", "Thu Dec  3 10:00:00 GMT 2026"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := httpsig.ParseDate(tt.value); err == nil {
				t.Errorf("ParseDate(%q) = %v, want an error", tt.value, got)
			}
		})
	}
}

// Every form net/http reads, ParseDate reads the same way: nothing a
// client got through before is refused now.
func TestParseDateAcceptsHTTPDates(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	for _, layout := range []string{http.TimeFormat, time.RFC850, time.ANSIC, time.RFC1123, time.RFC1123Z, time.RFC3339} {
		v := now.Format(layout)
		got, err := httpsig.ParseDate(v)
		if err != nil {
			t.Errorf("ParseDate(%q): %v", v, err)
			continue
		}
		if !got.Equal(now) {
			t.Errorf("ParseDate(%q) = %v, want %v", v, got, now)
		}
	}
}
