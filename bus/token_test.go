package bus_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// kvKeyRE is what NATS accepts as a KV key; a token must
// also hold no '.' or '/', which separate key segments and subject tokens.
var kvKeyRE = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

var tokenCases = []struct {
	name string
	in   string
}{
	{"Plain", "alice"},
	{"DotAndAt", "a.b@c"},
	{"Space", "x y"},
	{"Escape", "="},
	{"EscapeLookalike", "=41"},
	{"Unicode", "jürgen-日本"},
	{"Wildcards", "*.>"},
	{"Slash", "a/b"},
	{"Colon", "a:b"},
	{"Control", "a\tb\x00"},
	{"InvalidUTF8", "\xff\xfe"},
	{"Kept", "A-z_0-9"},
}

func TestToken(t *testing.T) {
	for _, tc := range tokenCases {
		t.Run(tc.name, func(t *testing.T) {
			tok := bus.Token(tc.in)
			if !kvKeyRE.MatchString(tok) || strings.ContainsAny(tok, "./") {
				t.Errorf("Token(%q) = %q: not a single KV key segment", tc.in, tok)
			}
			if subj := "keysd.events.account." + tok; !server.IsValidLiteralSubject(subj) || strings.Count(subj, ".") != 3 {
				t.Errorf("Token(%q) = %q: not one literal subject token", tc.in, tok)
			}
			got, err := bus.Untoken(tok)
			if err != nil {
				t.Fatalf("Untoken(%q): %v", tok, err)
			}
			if want := tc.in; got != want {
				t.Errorf("Untoken(Token(%q)) = %q", want, got)
			}
		})
	}
}

func TestToken_Distinct(t *testing.T) {
	// A reversible encoding never maps two names to one subject.
	seen := map[string]string{}
	for _, tc := range tokenCases {
		tok := bus.Token(tc.in)
		if other, ok := seen[tok]; ok {
			t.Errorf("Token(%q) = Token(%q) = %q", tc.in, other, tok)
		}
		seen[tok] = tc.in
	}
}

func TestUntoken(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"ErrTruncated", "ab=4"},
		{"ErrTruncatedAtEnd", "ab="},
		{"ErrBadHex", "=zz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := bus.Untoken(tc.in); err == nil {
				t.Errorf("Untoken(%q) = %q, want an error", tc.in, got)
			}
		})
	}
}

// TestOwnerSubject stores an event for each awkward owner ID on a real
// server and reads the owner back from the subject it was stored under.
func TestOwnerSubject(t *testing.T) {
	l := MustEventLog(t)
	for _, tc := range tokenCases {
		t.Run(tc.name, func(t *testing.T) {
			owner := domain.AccountOwner(tc.in)
			MustAppend(t, l, owner, 0, testEvents(owner, 1))
			rs := MustReadOwner(t, l, owner)
			if got, want := len(rs), 1; got != want {
				t.Fatalf("events of %q: got %d, want %d", tc.in, got, want)
			}
			got, err := bus.OwnerFromSubject(rs[0].Subject)
			if err != nil {
				t.Fatal(err)
			}
			if want := owner; got != want {
				t.Errorf("OwnerFromSubject(%q) = %v, want %v", rs[0].Subject, got, want)
			}
		})
	}
	// Every owner has its own subject: nothing leaked into another's.
	last, err := l.LastSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := last, uint64(len(tokenCases)); got != want {
		t.Errorf("LastSeq = %d, want %d", got, want)
	}
}
