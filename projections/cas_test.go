package projections_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// Two allocators (two replicas, each with its own read model handle on
// one log) hand out serials concurrently from tiny blocks, so that they
// race for nearly every block: no serial is handed out twice, and none
// is 0.
func TestSerials_UniqueAcrossAllocators(t *testing.T) {
	e := MustEnv(t)
	ctx := context.Background()
	var allocators []*domain.Serials
	for range 2 {
		cas, err := projections.OpenCAs(ctx, e.conn, e.log, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		allocators = append(allocators, &domain.Serials{Repo: cas, Block: 3})
	}
	const perWorker = 30
	var (
		mu   sync.Mutex
		seen = map[uint64]int{}
		wg   sync.WaitGroup
	)
	for i := range 8 {
		s := allocators[i%2]
		wg.Go(func() {
			for range perWorker {
				serial, err := s.Next(ctx, meta())
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[serial]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got, want := len(seen), 8*perWorker; got != want {
		t.Errorf("%d distinct serials, want %d", got, want)
	}
	for serial, n := range seen {
		if serial == 0 || n != 1 {
			t.Errorf("serial %d handed out %d times", serial, n)
		}
	}
}
