package domain_test

import (
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// nameCases are names every kind of name that is a path segment (key
// names, instance ids) accepts or refuses alike. want is "" for a valid
// name, else a part of the message.
var nameCases = []struct {
	name, in, want string
}{
	{"Letters", "web", ""},
	{"Digits", "2024", ""},
	{"Punctuation", "a-b_c.d~e!f*g'h(i)j:k@l;m,n=o+p$q&r?s#t[u]v{w}x|y^z`\"<>", ""},
	{"Backslash", `a\b`, ""},
	{"Percent", "100%", ""},
	{"PercentEncodedLooking", "a%2Fb", ""},
	{"InnerSpace", "public only", ""},
	{"NonASCIILetters", "ключ-鍵-κλειδί", ""},
	{"Emoji", "🔑", ""},
	{"DotsInside", "a..b", ""},
	{"LeadingDot", ".hidden", ""},
	{"TrailingDot", "a.", ""},
	{"ThreeDots", "...", ""},
	{"EncodedDotDot", "%2E%2E", ""},
	{"Longest", strings.Repeat("x", 255), ""},
	{"ErrDot", ".", `must not be "."`},
	{"ErrDotDot", "..", `must not be ".."`},
	{"ErrSlash", "a/b", "must not contain '/'"},
	{"ErrTooLong", strings.Repeat("x", 256), "at most 255 bytes"},
	{"ErrTooLongMultibyte", strings.Repeat("й", 128), "at most 255 bytes"},
	{"ErrInvalidUTF8", "a\xffb", "valid UTF-8"},
	{"ErrNUL", "a\x00b", "control"},
	{"ErrNewline", "a\nb", "control"},
	{"ErrTab", "a\tb", "control"},
	{"ErrDEL", "a\x7fb", "control"},
	{"ErrC1", "a\u0085b", "control"},
	{"ErrZeroWidthSpace", "a\u200bb", "format"},
	{"ErrDirectionOverride", "a\u202eb", "format"},
	{"ErrByteOrderMark", "\ufeffa", "format"},
	{"ErrLineSeparator", "a\u2028b", "line separator"},
	{"ErrLeadingSpace", " web", "white space"},
	{"ErrTrailingSpace", "web ", "white space"},
	{"ErrNoBreakSpaceAtEnd", "web\u00a0", "white space"},
	{"ErrIdeographicSpaceAtStart", "\u3000web", "white space"},
	{"ErrOnlySpace", " ", "white space"},
}

func TestValidateKeyName(t *testing.T) {
	for _, tc := range nameCases {
		t.Run(tc.name, func(t *testing.T) {
			checkNameError(t, domain.ValidateKeyName(tc.in), "name ", tc.want)
		})
	}
	t.Run("ErrEmpty", func(t *testing.T) {
		err := domain.ValidateKeyName("")
		if got, want := domain.ErrorCode(err), domain.EINVALID; got != want {
			t.Errorf("code %q, want %q", got, want)
		}
	})
}

func TestValidateInstanceID(t *testing.T) {
	for _, tc := range nameCases {
		t.Run(tc.name, func(t *testing.T) {
			checkNameError(t, domain.ValidateInstanceID(tc.in), "instanceId ", tc.want)
		})
	}
	t.Run("ErrEmpty", func(t *testing.T) {
		err := domain.ValidateInstanceID("")
		if got, want := domain.ErrorCode(err), domain.EMISSING; got != want {
			t.Errorf("code %q, want %q", got, want)
		}
	})
}

// checkNameError checks err is nil when want is "", else an EINVALID
// error whose message begins with field and holds want.
func checkNameError(tb testing.TB, err error, field, want string) {
	tb.Helper()
	if want == "" {
		if err != nil {
			tb.Errorf("refused: %v", err)
		}
		return
	}
	if got := domain.ErrorCode(err); got != domain.EINVALID {
		tb.Fatalf("code %q (%v), want %q", got, err, domain.EINVALID)
	}
	if msg := domain.ErrorMessage(err); !strings.HasPrefix(msg, field) || !strings.Contains(msg, want) {
		tb.Errorf("message %q, want %q...%q", msg, field, want)
	}
}

func TestValidateLogin(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"Letters", "alice", ""},
		{"Punctuation", "bob.smith@corp_x-y", ""},
		{"RouteNames", "api", ""},
		{"TrailingDots", "a..", ""},
		{"ErrMy", "my", "reserved"},
		{"ErrDotDot", "..", "a letter"},
		{"ErrLeadingDigit", "1alice", "a letter"},
		{"ErrSlash", "a/b", "a letter"},
		{"ErrPercent", "a%41", "a letter"},
		{"ErrSpace", "a b", "a letter"},
		{"ErrNonASCII", "алиса", "a letter"},
		{"ErrOneCharacter", "a", "2 to 64"},
		{"ErrTooLong", "a" + strings.Repeat("b", 64), "2 to 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := domain.ValidateLogin(tc.in)
			if tc.want == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if got := domain.ErrorCode(err); got != domain.EINVALID || !strings.Contains(domain.ErrorMessage(err), tc.want) {
				t.Errorf("got %s %q, want %s with %q", got, domain.ErrorMessage(err), domain.EINVALID, tc.want)
			}
		})
	}
}
