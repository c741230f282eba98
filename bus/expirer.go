package bus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// expirerRetry is how soon the expirer tries again to record an expiry
// it could not (the log was unavailable).
const expirerRetry = time.Second

// ServeExpirer records the KeyExpired of every key when its expiry comes,
// until ctx ends. Every replica runs one: each replays the events of the
// owners of keys (accounts, shared keys, instances) into a schedule of
// the expiries to come (domain.ExpirySchedule: one entry per key that has
// an expiry and is neither expired nor deleted), follows the log from
// there, and wakes at the next expiry. It decides each owner's KeyExpired
// events against the owner's state (domain.ExpiryService): when replicas
// wake together, one append wins and the others, failing the optimistic
// check, decide again and find the keys expired. So each expiry is
// recorded once, and a key that expired while every replica was down is
// recorded at the next start, once the replay has caught up with the log.
//
// The replay runs beside everything else: start-up does not wait for it.
// Until it has caught up, nothing is recorded; a key used meanwhile is
// refused all the same, as every reader checks the expiry itself
// (ExpiredAt).
func ServeExpirer(ctx context.Context, l *EventLog, svc *domain.ExpiryService, obs ExpiryObserver, logger *slog.Logger) error {
	x := &expirer{svc: svc, obs: obs, logger: logger, wake: make(chan struct{}, 1)}
	var follow sync.WaitGroup
	defer follow.Wait()
	follow.Go(func() { x.follow(ctx, l) })
	x.run(ctx)
	return nil
}

// ExpiryObserver learns what the expirer does (metrics).
type ExpiryObserver interface {
	// KeysExpired is called with the number of KeyExpired events the
	// expirer recorded for one owner.
	KeysExpired(n int)
}

// expirer is the state ServeExpirer shares between the replay that
// follows the log and the loop that records expiries.
type expirer struct {
	svc    *domain.ExpiryService
	obs    ExpiryObserver // may be nil
	logger *slog.Logger
	wake   chan struct{}

	mu       sync.Mutex
	schedule *domain.ExpirySchedule
	caughtUp bool // the replay has read every event there was at its start
}

// follow keeps the schedule up to date from the log until ctx ends. A
// replay that fails (the connection lost for good) starts again from the
// beginning, with a new schedule.
func (x *expirer) follow(ctx context.Context, l *EventLog) {
	for ctx.Err() == nil {
		x.mu.Lock()
		x.schedule, x.caughtUp = domain.NewExpirySchedule(), false
		x.mu.Unlock()
		err := x.replay(ctx, l)
		if ctx.Err() != nil {
			return
		}
		x.logger.Warn("expirer: following the log failed; replaying it again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(expirerRetry):
		}
	}
}

func (x *expirer) replay(ctx context.Context, l *EventLog) error {
	last, err := l.LastSeq(ctx)
	if err != nil {
		return err
	}
	if last == 0 {
		x.setCaughtUp()
	}
	_, err = l.Replay(ctx, ReplayOptions{
		Kinds:  []string{domain.OwnerAccount, domain.OwnerShared, domain.OwnerInstance},
		Follow: true,
		Pending: func(left uint64) {
			if left == 0 {
				x.setCaughtUp()
			}
		},
	}, func(r Recorded) error {
		x.mu.Lock()
		err := x.schedule.Apply(r.Event)
		live := x.caughtUp
		x.mu.Unlock()
		if err != nil {
			// An event this build cannot read (a newer version): its
			// key's expiry is left to a replica that can.
			x.logger.Error("expirer: event not understood; skipped", "seq", r.Seq, "type", r.Event.Type, "err", err)
		}
		if live {
			x.poke() // a new key may expire before the next one known
		}
		return nil
	})
	return err
}

func (x *expirer) setCaughtUp() {
	x.mu.Lock()
	first := !x.caughtUp
	x.caughtUp = true
	n := x.schedule.Len()
	x.mu.Unlock()
	if first {
		x.logger.Info("expirer: caught up with the log", "scheduled", n)
		x.poke()
	}
}

// poke wakes the loop to look at the schedule again.
func (x *expirer) poke() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// run records the expiries as they come until ctx ends.
func (x *expirer) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var owners []domain.Owner
		var next time.Time
		var pending bool
		x.mu.Lock()
		if x.schedule != nil && x.caughtUp {
			owners = x.schedule.TakeDue(now)
			next, pending = x.schedule.Next()
		}
		x.mu.Unlock()
		for _, o := range owners {
			x.expire(ctx, o, now)
		}
		if len(owners) > 0 {
			continue // the schedule may have moved on meanwhile
		}
		wait := time.Hour
		if pending {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-x.wake:
		case <-timer.C:
		}
	}
}

// expire records the due expiries of owner's keys; a failure is tried
// again shortly.
func (x *expirer) expire(ctx context.Context, o domain.Owner, now time.Time) {
	n, err := x.svc.ExpireDue(ctx, o, now)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		x.logger.Warn("expirer: expiry not recorded; will retry", "owner", o.String(), "err", err)
		x.mu.Lock()
		x.schedule.Retry(o, time.Now().Add(expirerRetry))
		x.mu.Unlock()
		return
	}
	if n > 0 {
		x.logger.Info("expirer: keys expired", "owner", o.String(), "expired", n)
		if x.obs != nil {
			x.obs.KeysExpired(n)
		}
		return
	}
	// Nothing recorded: another replica came first, or the key changed.
	x.logger.Debug("expirer: nothing to record", "owner", o.String())
}
