package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// storedEvent returns the last KeyCreated keysd stored in dataDir (keysd
// stopped): the message the raw publishes imitate.
func storedEvent(ctx context.Context, dataDir string) (*jetstream.RawStreamMsg, error) {
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dataDir + "/jetstream"})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		return nil, err
	}
	m, err := l.Stream().GetLastMsgForSubject(ctx, bus.KindSubjects(domain.OwnerAccount))
	if err != nil {
		return nil, err
	}
	if got := m.Header.Get(bus.HeaderEventType); got != domain.TypeKeyCreated {
		return nil, fmt.Errorf("last account event is %s, not %s", got, domain.TypeKeyCreated)
	}
	return m, nil
}

// measureRawPublish publishes messages shaped like model (same size, same
// headers, a subject per owner) to a stream configured as keysd's event
// log, on an embedded server with keysd's durability (SyncAlways), with
// cfg.Concurrency publishers each waiting for its acknowledgement.
func (b *bench) measureRawPublish(ctx context.Context, model *jetstream.RawStreamMsg) (throughput, error) {
	dir := fmt.Sprintf("%s/raw-%d", b.work, time.Now().UnixNano())
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
	if err != nil {
		return throughput{}, err
	}
	defer c.Close()
	if _, err := bus.OpenEventLog(ctx, c); err != nil {
		return throughput{}, err
	}
	payload := make([]byte, len(model.Data))
	_, _ = rand.Read(payload)

	b.logf("writes: raw JetStream publishes of %d bytes", len(payload))
	latencies := make([][]time.Duration, b.cfg.Concurrency)
	var wg sync.WaitGroup
	var failed failures
	start := time.Now()
	deadline := start.Add(b.cfg.Duration)
	for w := range b.cfg.Concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				id := ulid.Make().String()
				m := nats.NewMsg(bus.SubjectPrefix + ".account." + id)
				m.Data = payload
				m.Header.Set(jetstream.MsgIDHeader, id)
				m.Header.Set(bus.HeaderEventType, domain.TypeKeyCreated)
				m.Header.Set(bus.HeaderEventID, id)
				t0 := time.Now()
				if _, err := c.JS.PublishMsg(ctx, m); err != nil {
					failed.add(err)
					continue
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(latencies...)
	slices.Sort(all)
	out := throughput{Ops: uint64(len(all)), PerSec: float64(len(all)) / elapsed.Seconds()}
	if len(all) > 0 {
		out.P50 = all[len(all)*50/100]
		out.P99 = all[min(len(all)-1, len(all)*99/100)]
	}
	out.Failed, out.Errors = failed.result()
	return out, nil
}

// failures counts failed operations, each one, and keeps their distinct
// messages: a thousand timeouts are a thousand failures and one message.
type failures struct {
	n    atomic.Uint64
	msgs sync.Map
}

func (f *failures) add(err error) {
	f.n.Add(1)
	f.msgs.Store(err.Error(), true)
}

// result returns how many operations failed and their distinct messages,
// sorted.
func (f *failures) result() (uint64, []string) {
	var msgs []string
	f.msgs.Range(func(k, _ any) bool {
		msgs = append(msgs, k.(string))
		return true
	})
	slices.Sort(msgs)
	return f.n.Load(), msgs
}
