package bus_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// BenchmarkAppend measures what durability costs: appending one event with
// the expected-sequence check, on the embedded server as keysd runs it
// (fsync before every acknowledgement) and on a server with JetStream's
// default sync (every two minutes). The ratio belongs in BENCHMARKS.md.
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"SyncAlways", "DefaultSync"} {
		for _, par := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", mode, par*runtime.GOMAXPROCS(0)), func(b *testing.B) {
				log := benchLog(b, mode == "SyncAlways")
				var n atomic.Int64
				b.SetParallelism(par)
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						// A fresh owner per append: no conflicts, so this
						// measures the log, not retries.
						owner := domain.AccountOwner(fmt.Sprintf("bench%d", n.Add(1)))
						ev := domain.NewEvent(owner, domain.AccountCreated{Login: owner.ID}, domain.Meta{Actor: "bench"})
						if _, err := log.Append(context.Background(), owner, 0, []domain.Event{ev}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

func benchLog(b *testing.B, syncAlways bool) *bus.EventLog {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	if syncAlways {
		c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		l, err := bus.OpenEventLog(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		b.Fatal("server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	l, err := bus.OpenEventLog(ctx, &bus.Conn{NC: nc, JS: js, Replicas: 1})
	if err != nil {
		b.Fatal(err)
	}
	return l
}
