package domain

import (
	"context"
	"errors"
)

// decideAndAppend is the load, decide, append loop of one owner: it loads
// the owner's state, lets decide turn a command into events, appends them
// if nothing happened to the owner meanwhile, and decides again after a
// version conflict. When decide decides nothing, the state loaded is
// returned. what names the owner in the error after too many conflicts.
// loaded, when not nil, is the owner's state as the request already read
// it: the first decision is taken against it instead of loading the owner
// again (a write in between fails the append, and the command is decided
// again against a fresh load).
func decideAndAppend[T any](ctx context.Context, what string, loaded *T,
	load func(context.Context) (*T, error),
	version func(*T) uint64,
	appendEvents func(context.Context, uint64, []Event) (*T, error),
	decide func(*T) ([]Event, error),
) (*T, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		st := loaded
		if attempt > 0 || st == nil {
			var err error
			if st, err = load(ctx); err != nil {
				return nil, err
			}
		}
		evs, err := decide(st)
		if err != nil {
			return nil, err
		}
		if len(evs) == 0 {
			return st, nil
		}
		after, err := appendEvents(ctx, version(st), evs)
		if errors.Is(err, ErrVersionConflict) {
			if err := ConflictBackoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		}
		return after, err
	}
	return nil, Errorf(EUNAVAILABLE, "too many concurrent changes to %s; retry", what)
}
