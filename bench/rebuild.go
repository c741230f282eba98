package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// measureRebuild seeds cfg.Keys keys into a log of its own and rebuilds
// the accounts projection from it twice, in this process on the embedded
// server keysd uses (the log SyncAlways, the bucket async), with the code
// keysd runs:
//
//   - into an empty bucket, as at a first start or after the bucket is
//     wiped (projections.OpenAccounts finds no bucket, creates it and
//     rebuilds): every document is written;
//   - again over the bucket just built, as POST
//     /--admin/projections/accounts/rebuild does on a healthy replica:
//     every document is read and compared, none written (a re-check).
//
// With cfg.RebuildProfile the CPU profile of the first rebuild, keysd's
// side and the NATS server's alike (one process), goes to that file.
func (b *bench) measureRebuild(ctx context.Context, rep *report) error {
	dataDir := b.work + "/rebuild"
	accounts := (b.cfg.Keys + b.cfg.KeysPerAccount - 1) / b.cfg.KeysPerAccount
	want := uint64(b.cfg.Keys + accounts) // an AccountCreated and a KeyCreated each
	events, err := accountEventCount(ctx, dataDir)
	if err != nil {
		return err
	}
	// A -work-dir kept from an earlier run already holds the log: seeding
	// takes minutes on a busy machine, the rebuild seconds.
	if events != want {
		// A log of another size (another -keys) cannot be seeded on top of:
		// its accounts exist already.
		if err := os.RemoveAll(dataDir); err != nil {
			return err
		}
		b.logf("rebuild: seeding %d keys", b.cfg.Keys)
		if _, err := b.seed(ctx, dataDir); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		if events, err = accountEventCount(ctx, dataDir); err != nil {
			return err
		}
	}
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dataDir + "/jetstream"})
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		return err
	}
	// The seed wrote the log only; no bucket exists. Delete it anyway, so
	// that the measurement is of an empty bucket whatever ran before.
	err = c.JS.DeleteKeyValue(ctx, projections.AccountsBucket)
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete bucket %s: %w", projections.AccountsBucket, err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	what := fmt.Sprintf("accounts: %d events, %d documents", events, accounts)

	// The replay alone, to tell reading the log from writing documents.
	b.logf("rebuild: replay only")
	t0 := time.Now()
	if _, err := l.Replay(ctx, bus.ReplayOptions{Kinds: []string{domain.OwnerAccount}}, func(bus.Recorded) error { return nil }); err != nil {
		return err
	}
	took := time.Since(t0)
	rep.value("replay of the same events alone (read, decode; no documents)",
		fmt.Sprintf("%.0f events/s (%s)", float64(events)/took.Seconds(), took.Round(time.Millisecond)), "", "")

	b.logf("rebuild: into an empty bucket")
	stop, err := b.startProfile()
	if err != nil {
		return err
	}
	t0 = time.Now()
	p, err := projections.OpenAccounts(ctx, c, l, logger)
	took = time.Since(t0)
	stop()
	if err != nil {
		return err
	}
	perSec := float64(events) / took.Seconds()
	rep.check("projection rebuild into an empty bucket ("+what+")",
		fmt.Sprintf("%.0f events/s (%s)", perSec, took.Round(time.Millisecond)), ">= 100,000 events/s", perSec >= 100_000)

	b.logf("rebuild: re-check over the built bucket")
	t0 = time.Now()
	if err := p.Rebuild(ctx); err != nil {
		return err
	}
	took = time.Since(t0)
	rep.value("projection rebuild re-check of an up-to-date bucket, nothing written ("+what+")",
		fmt.Sprintf("%.0f events/s (%s)", float64(events)/took.Seconds(), took.Round(time.Millisecond)), "", "")
	return nil
}

// startProfile starts the CPU profile of cfg.RebuildProfile, if set.
func (b *bench) startProfile() (stop func(), err error) {
	if b.cfg.RebuildProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(b.cfg.RebuildProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
