package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

const sharedPath = "/api/resource-manager/infrastructure-keys/shared"

// seedShared writes cfg.SharedKeys shared keys (public halves only)
// straight into the event log of dataDir, keysd not running: the events
// the API would append.
func (b *bench) seedShared(ctx context.Context, dataDir string) error {
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dataDir + "/jetstream"})
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		return err
	}
	meta := domain.Meta{Actor: "bench-seed"}
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.cfg.SharedKeys || ctx.Err() != nil {
					return
				}
				_, pub := newKey()
				pair, err := domain.ParseKeyPair(authorizedKey(pub), "")
				if err != nil {
					errc <- err
					return
				}
				name := fmt.Sprintf("pool%06d", i)
				e, err := (&domain.SharedKey{Name: name}).CreateShared(domain.NewInfraKey{ID: ulid.Make().String(), Name: name, Pair: pair}, meta)
				if err == nil {
					_, err = l.Append(ctx, e.Owner, 0, []domain.Event{e})
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// measureList lists cfg.SharedKeys shared keys through the LM API: the
// first list after start-up (which reads the pool from the log), then the
// median of later ones, whole and as a first page of 100.
func (b *bench) measureList(ctx context.Context, rep *report) error {
	dataDir := b.work + "/list"
	b.logf("list: seeding %d shared keys", b.cfg.SharedKeys)
	if err := b.seedShared(ctx, dataDir); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	k, _, err := b.startKeysd(ctx, dataDir)
	if err != nil {
		return err
	}
	defer k.stop()
	list := func(path string, want int) (time.Duration, error) {
		start := time.Now()
		data, err := mustDo(ctx, b.admin, "GET", k.URL+path, nil, http.StatusOK)
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		var keys []json.RawMessage
		if err := json.Unmarshal(data, &keys); err != nil {
			return 0, err
		}
		if len(keys) != want {
			return 0, fmt.Errorf("GET %s: %d keys, want %d", path, len(keys), want)
		}
		return took, nil
	}
	first, err := list(sharedPath, b.cfg.SharedKeys)
	if err != nil {
		return err
	}
	median := func(path string, want int) (time.Duration, error) {
		var ts []time.Duration
		for range 21 {
			t, err := list(path, want)
			if err != nil {
				return 0, err
			}
			ts = append(ts, t)
		}
		slices.Sort(ts)
		return ts[len(ts)/2], nil
	}
	whole, err := median(sharedPath, b.cfg.SharedKeys)
	if err != nil {
		return err
	}
	page, err := median(sharedPath+"?limit=100", min(100, b.cfg.SharedKeys))
	if err != nil {
		return err
	}
	rep.value(fmt.Sprintf("first list of %d shared keys after start-up (reads the pool from the log)", b.cfg.SharedKeys), first.Round(time.Millisecond).String(), "", "")
	rep.check(fmt.Sprintf("list of %d shared keys, median of 21", b.cfg.SharedKeys), whole.Round(100*time.Microsecond).String(), "< 150ms", whole < 150*time.Millisecond)
	rep.value("first page of 100 of them (?limit=100), median of 21", page.Round(100*time.Microsecond).String(), "", "")
	return nil
}
