package projections_test

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// revocationEvents returns the events of a log whose list revokes
// serials serials (under two CA keys, in runs and with gaps, as
// revocations come) and fps key fingerprints (keys created, then deleted).
func revocationEvents(tb testing.TB, serials, fps int) []bus.Recorded {
	tb.Helper()
	var rs []bus.Recorded
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(owner domain.Owner, p domain.Payload) {
		t = t.Add(time.Millisecond)
		rs = append(rs, bus.Recorded{Seq: uint64(len(rs) + 1), Event: domain.NewEvent(owner, p, domain.Meta{Actor: "bench", Time: t})})
	}
	ca := domain.CAOwner(domain.CAUser)
	for _, name := range []string{"ca-1", "ca-2"} {
		k := MustPublicKey(tb, name)
		add(ca, domain.CAKeyCreated{ID: name, CA: domain.CAUser, PublicKey: k.Authorized, FingerprintSHA256: k.FingerprintSHA256})
	}
	serial := uint64(1)
	for i := range serials {
		// Runs of five revoked serials, then a gap of seven.
		if i%5 == 0 {
			serial += 7
		}
		serial++
		add(domain.AccountOwner(fmt.Sprintf("user%d", i%1000)), domain.CertificateRevoked{Serial: serial, CAKeyID: []string{"ca-1", "ca-2"}[i%2]})
	}
	for i := range fps {
		var h [sha256.Size]byte
		if _, err := rand.Read(h[:]); err != nil {
			tb.Fatal(err)
		}
		owner := domain.InstanceOwner(fmt.Sprintf("vm-%d", i/4))
		name := fmt.Sprintf("key-%d", i%4)
		fp := "SHA256:" + base64.RawStdEncoding.EncodeToString(h[:])
		add(owner, domain.KeyCreated{Name: name, FingerprintSHA256: fp, Key: "not parsed: the fingerprint is recorded"})
		add(owner, domain.KeyDeleted{Name: name})
	}
	return rs
}

// BenchmarkRevocations builds the list from the events of 100,000
// revoked entries, half serials and half fingerprints: every event
// applied (decoded) by the builder, then the list encoded. It reports the
// list's size and the heap the builder holds per entry.
func BenchmarkRevocations(b *testing.B) {
	const serials, fps = 50_000, 50_000
	events := revocationEvents(b, serials, fps)
	b.Run("ApplyAndEncode", func(b *testing.B) {
		var size int
		for b.Loop() {
			r := projections.NewRevocations(nil)
			for _, rec := range events {
				if err := r.ApplyRecorded(rec); err != nil {
					b.Fatal(err)
				}
			}
			k, err := r.Encode()
			if err != nil {
				b.Fatal(err)
			}
			if k.Entries != serials+fps {
				b.Fatalf("%d entries, want %d", k.Entries, serials+fps)
			}
			size = len(k.Data)
		}
		b.ReportMetric(float64(size), "KRL-bytes")
	})
	b.Run("Encode", func(b *testing.B) {
		r := projections.NewRevocations(nil)
		for _, rec := range events {
			if err := r.ApplyRecorded(rec); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			if _, err := r.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Memory held once built: per revoked entry (the encoded list
	// included), and per live key (the same keys, not deleted).
	var live []bus.Recorded
	for _, rec := range events {
		if rec.Event.Type != domain.TypeKeyDeleted {
			live = append(live, rec)
		}
	}
	for _, m := range []struct {
		name, unit string
		events     []bus.Recorded
		per        int
	}{{"Memory", "heap-B/entry", events, serials + fps}, {"MemoryLiveKeys", "heap-B/live-key", live[len(live)-fps:], fps}} {
		b.Run(m.name, func(b *testing.B) {
			var held float64
			for b.Loop() {
				held = float64(heldBy(b, m.events)) / float64(m.per)
			}
			b.ReportMetric(held, m.unit)
		})
	}
}

// heldBy returns the heap a list built from events holds, its encoding
// included.
func heldBy(b *testing.B, events []bus.Recorded) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r := projections.NewRevocations(nil)
	for _, rec := range events {
		if err := r.ApplyRecorded(rec); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := r.Encode(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(r)
	return after.HeapAlloc - before.HeapAlloc
}
