package projections_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// BenchmarkRebuild rebuilds the accounts projection over 2,000 accounts
// of 10 keys (22,000 events), for a CPU profile of the rebuild; the
// events/s figure of record comes from go run ./bench:
//
//	go test -run xxx -bench Rebuild -cpuprofile cpu.out ./projections
func BenchmarkRebuild(b *testing.B) {
	ctx := context.Background()
	e := MustEnv(b)
	const accounts, keys = 2000, 10
	for i := range accounts {
		login := fmt.Sprintf("user%d", i)
		evs, err := domain.CreateAccount(nil, login, false, meta())
		if err != nil {
			b.Fatal(err)
		}
		a, _ := domain.ApplyAccountEvent(nil, evs[0], 1)
		for j := range keys {
			ev, err := a.CreateKey(fmt.Sprintf("key%d", j), MustPublicKey(b, "bench"), nil, meta())
			if err != nil {
				b.Fatal(err)
			}
			a, _ = domain.ApplyAccountEvent(a, ev, uint64(j+2))
			evs = append(evs, ev)
		}
		if _, err := e.log.Append(ctx, domain.AccountOwner(login), 0, evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if err := e.accounts.Rebuild(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(accounts*(keys+1)*b.N)/b.Elapsed().Seconds(), "events/s")
}
