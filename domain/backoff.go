package domain

import (
	"context"
	"math/rand/v2"
	"time"
)

// ConflictBackoff waits before attempt number attempt (0 for the first
// retry) after a lost compare-and-set: a random delay, growing with the
// attempt, up to 50 ms. On a replicated JetStream stream a conflict also
// means "another write to this subject is still being committed", and that
// resolves only once the commit applies: retrying at once reads the same
// state and fails again, so every attempt is spent within a millisecond.
// The randomness keeps competing writers from retrying in step. It returns
// ctx's error if ctx ends first.
func ConflictBackoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit) + limit/4)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
