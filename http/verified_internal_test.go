package http

import (
	"testing"
	"time"
)

func TestVerifiedSignatures(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var v verifiedSignatures
	a := signatureID("ssh-ed25519 AAAA", "ed25519-sha512", "date: x", "sig")
	// Length prefixes: moving bytes between fields is another ID.
	if b := signatureID("ssh-ed25519 AAA", "Aed25519-sha512", "date: x", "sig"); a == b {
		t.Fatal("IDs of different verifications collide")
	}
	if v.verified(a, now) {
		t.Fatal("verified before any was added")
	}
	v.add(a, now.Add(time.Minute), now)
	if !v.verified(a, now.Add(59*time.Second)) {
		t.Error("not remembered within its time")
	}
	if v.verified(a, now.Add(time.Minute)) {
		t.Error("remembered after its date left the clock skew")
	}
	// Bounded: adding past the bound keeps at most maxVerified entries,
	// dropping expired ones first.
	for i := range maxVerified + 10 {
		until := now.Add(time.Hour)
		if i%2 == 0 {
			until = now.Add(-time.Second)
		}
		v.add(signatureID("k", "a", "s", string(rune(i))), until, now)
	}
	if n := len(v.seen); n > maxVerified {
		t.Errorf("%d entries, bound %d", n, maxVerified)
	}
	last := signatureID("k", "a", "s", string(rune(maxVerified+9)))
	if !v.verified(last, now) {
		t.Error("the entry added last was dropped")
	}
}
