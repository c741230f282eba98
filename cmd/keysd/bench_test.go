package main

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkGetKey serves signed GetKey requests in process, for a CPU
// profile of the read path (docs/BENCHMARKS.md; the numbers themselves
// come from go run ./bench):
//
//	go test -run xxx -bench GetKey -cpuprofile cpu.out ./cmd/keysd
func BenchmarkGetKey(b *testing.B) {
	k := MustStart(b, map[string]string{"KEYSD_LOG_LEVEL": "info"})
	alice := MustAccount(b, k, "alice")
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := newRequest(b, http.MethodGet, fmt.Sprintf("%s/alice/keys/alice@test?n=%d", k.URL, n.Add(1)), nil)
			if err := alice.signer.Sign(req); err != nil {
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
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
