package domain_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// Helpers of the decision tests: decisions are pure (state in, events
// out), so these tests build states by applying events, as every reader
// does, and need no event log.

// testMeta is the envelope every decision test records under.
var testMeta = domain.Meta{Actor: "tester", RequestID: "req-1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

// MustKeyPair returns a fresh ed25519 key pair with its private half.
func MustKeyPair(tb testing.TB, comment string) *domain.KeyPair {
	tb.Helper()
	pair, err := domain.GenerateKeyPair("ed25519", comment)
	if err != nil {
		tb.Fatal(err)
	}
	return pair
}

// MustPublicKey returns a fresh ed25519 public key with comment.
func MustPublicKey(tb testing.TB, comment string) *domain.PublicKey {
	tb.Helper()
	k, err := domain.ParsePublicKey(MustKeyPair(tb, comment).PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustDecode returns the payload of e, which must be of type typ.
func MustDecode[P any](tb testing.TB, e domain.Event, typ string) P {
	tb.Helper()
	if e.Type != typ {
		tb.Fatalf("event type = %s, want %s", e.Type, typ)
	}
	var p P
	if err := e.Decode(&p); err != nil {
		tb.Fatal(err)
	}
	return p
}

// MustApply applies evs, as if stored one after the other, to a copy of
// state s with apply, and returns the state after them. (The Apply
// functions change the state they are given: the copy keeps s as it was,
// for the next case of a table.)
func MustApply[S any](tb testing.TB, apply func(S, domain.Event, uint64) (S, error), s S, version uint64, evs ...domain.Event) S {
	tb.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	var cp S
	if err := json.Unmarshal(data, &cp); err != nil {
		tb.Fatal(err)
	}
	s = cp
	for i, e := range evs {
		var err error
		if s, err = apply(s, e, version+uint64(i)+1); err != nil {
			tb.Fatal(err)
		}
	}
	return s
}

// CheckCode fails unless err has code want ("" for no error).
func CheckCode(tb testing.TB, err error, want string) {
	tb.Helper()
	if got := domain.ErrorCode(err); got != want {
		tb.Fatalf("error = %v, want code %q", err, want)
	}
}

// MustJSON returns v as JSON, to compare states that hold pointers.
func MustJSON(tb testing.TB, v any) string {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}
