package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// run measures everything, in order, one phase at a time so that phases
// never compete for the CPU. A phase that fails is reported and the
// others still run.
func (b *bench) run(ctx context.Context) *report {
	rep := &report{}
	if slices.Contains(b.cfg.Phases, "api") {
		if err := b.measureAPI(ctx, rep); err != nil {
			rep.fail("reads and writes", err)
		}
	}
	if slices.Contains(b.cfg.Phases, "store") {
		if err := b.measureStore(ctx, rep); err != nil {
			rep.fail("memory and start-up", err)
		}
	}
	if slices.Contains(b.cfg.Phases, "rebuild") {
		if err := b.measureRebuild(ctx, rep); err != nil {
			rep.fail("projection rebuild", err)
		}
	}
	if slices.Contains(b.cfg.Phases, "cascade") {
		b.cascade(ctx, rep)
	}
	if slices.Contains(b.cfg.Phases, "intake") {
		if err := b.measureIntake(ctx, rep); err != nil {
			rep.fail("driver intake into one instance", err)
		}
	}
	if slices.Contains(b.cfg.Phases, "list") {
		if err := b.measureList(ctx, rep); err != nil {
			rep.fail("listing shared keys", err)
		}
	}
	return rep
}

// cascade reports the cascade measurement.
func (b *bench) cascade(ctx context.Context, rep *report) {
	what := fmt.Sprintf("cascade: InstanceRemoved to the last of %d instance keys gone from the API", b.cfg.CascadeKeys)
	took, err := b.measureCascade(ctx)
	if err != nil {
		rep.fail(what, err)
		return
	}
	// Issue 13's target: 10,000 keys in under 3 s (issue 6's was 1,000 in
	// under 1 s).
	limit := 3 * time.Second
	if b.cfg.CascadeKeys <= 1000 {
		limit = time.Second
	}
	rep.check(what, took.Round(time.Millisecond).String(), "< "+limit.String(), took < limit)
}

// measureAPI runs the read and write comparisons against one keysd.
func (b *bench) measureAPI(ctx context.Context, rep *report) error {
	dataDir := b.work + "/api"
	k, _, err := b.startKeysd(ctx, dataDir)
	if err != nil {
		return err
	}
	defer k.stop()
	if err := b.measureReads(ctx, k, rep); err != nil {
		return err
	}
	creates, split, err := b.measureCreates(ctx, k)
	if err != nil {
		return err
	}
	if err := k.stop(); err != nil {
		return fmt.Errorf("keysd exited with %v", err)
	}
	model, err := storedEvent(ctx, dataDir)
	if err != nil {
		return err
	}
	raw, err := b.measureRawPublish(ctx, model)
	if err != nil {
		return err
	}
	rep.ratio(fmt.Sprintf("CreateKey (read-your-writes) vs raw JetStream publish of %d bytes, SyncAlways, %d in flight", len(model.Data), b.cfg.Concurrency), creates, raw, 0.5)
	rep.value("CreateKey time, means from keysd's /metrics (the rest: signature, account loads, applying the event)", split, "", "")
	return nil
}
