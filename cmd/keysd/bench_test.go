package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkGetKey serves signed GetKey requests in process, for a CPU
// profile of the read path (docs/BENCHMARKS.md; the numbers themselves
// come from go run ./bench):
//
//	go test -run xxx -bench GetKey -cpuprofile cpu.out ./cmd/keysd
func BenchmarkGetKey(b *testing.B) {
	k := MustStart(b, map[string]string{"KEYSD_LOG_LEVEL": "info"})
	alice := MustAccount(b, k, "alice")
	benchSigned(b, http.StatusOK, func(i int64) (*client, *http.Request) {
		return alice, newRequest(b, http.MethodGet, fmt.Sprintf("%s/alice/keys/alice@test?n=%d", k.URL, i), nil)
	})
}

// BenchmarkCreateKey serves signed CreateKey requests in process, 16 in
// flight as go run ./bench sends them, for a CPU profile of the write path
// (docs/BENCHMARKS.md):
//
//	go test -run xxx -bench CreateKey -benchtime 5s -cpuprofile cpu.out ./cmd/keysd
func BenchmarkCreateKey(b *testing.B) {
	k := MustStart(b, map[string]string{"KEYSD_LOG_LEVEL": "info"})
	// Several accounts, so that writers rarely race on one account's
	// version (as go run ./bench writes).
	writers := make([]*client, 64)
	for i := range writers {
		writers[i] = MustAccount(b, k, fmt.Sprintf("writer%d", i))
	}
	benchSigned(b, http.StatusCreated, func(i int64) (*client, *http.Request) {
		w := int(i) % len(writers)
		// A fresh ed25519 key costs the client microseconds.
		body := fmt.Sprintf(`{"name":"k%d","key":%q}`, i, AuthorizedKey(b, MustKey(b), ""))
		return writers[w], newRequest(b, http.MethodPost, fmt.Sprintf("%s/writer%d/keys", k.URL, w), body)
	})
}

// benchSigned sends b.N requests, 16 in flight on two cores, each made by
// next and signed by the client it names, and requires status want.
func benchSigned(b *testing.B, want int, next func(i int64) (*client, *http.Request)) {
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, req := next(n.Add(1))
			if err := c.signer.Sign(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				b.Errorf("status %d, want %d", resp.StatusCode, want)
				return
			}
		}
	})
}

// BenchmarkSignCertificate signs user certificates through the API, 16
// requests in flight, for many accounts: each answer comes after the
// CertificateIssued is in the log and the account's read model has it
// (read-your-writes). It reports certificates per second and latency
// percentiles (docs/BENCHMARKS.md):
//
//	go test -run xxx -bench SignCertificate -benchtime 5000x ./cmd/keysd
func BenchmarkSignCertificate(b *testing.B) {
	k := MustStart(b, map[string]string{"KEYSD_LOG_LEVEL": "info"})
	if r := k.Admin.Do(b, "POST", "/--admin/cas/user", map[string]any{}); r.StatusCode != http.StatusCreated {
		b.Fatalf("create CA key: %d %s", r.StatusCode, r.Body)
	}
	// Many accounts, each signing a few certificates in a run, as users
	// do: an account keeps its certificates until they expire, so a few
	// accounts signing thousands would measure their growing documents.
	signers := make([]*client, 2048)
	for i := range signers {
		login := fmt.Sprintf("signer%d", i)
		signers[i] = MustAccountNamedKey(b, k, login, "k", MustKey(b))
	}
	var (
		n         atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
	)
	b.SetParallelism(8)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			c := signers[int(n.Add(1))%len(signers)]
			req := newRequest(b, http.MethodPost, k.URL+"/my/keys/k/certificates", "{}")
			t0 := time.Now()
			if err := c.signer.Sign(req); err != nil {
				b.Error(err)
				return
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d, want 201", resp.StatusCode)
				return
			}
		}
		mu.Lock()
		latencies = append(latencies, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "certs/s")
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
