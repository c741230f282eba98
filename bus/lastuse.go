package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/domain"
)

// LastUseBucket holds when each key was last used: one entry per key,
// "use.<Token of its UseID>", {"at": time}. It is not a read model of the
// log (a use is no event) and is never rebuilt: losing it loses only
// when keys were last used.
const LastUseBucket = "KEYSD_LAST_USE"

const lastUsePrefix = "use."

// DefaultLastUsePrecision is how coarse last use is unless configured.
const DefaultLastUsePrecision = time.Hour

// lastUseRecord is the value of an entry.
type lastUseRecord struct {
	At time.Time `json:"at"`
}

// LastUse records when keys were last used (domain.KeyUses) at a bounded
// cost: a use is noted in memory, and written only when the bucket's time
// for the key is at least the precision older. Writes are
// compare-and-set on the entry's revision, so replicas that note the same
// key at once write it once; every replica watches the bucket and
// answers reads from memory, without a round trip.
//
// So the bucket is written at most once per key per precision, however
// many requests use the key on however many replicas, and the time shown
// is a use at most the precision older than the last use
// (docs/operations.md, "Last use of keys").
type LastUse struct {
	kv        jetstream.KeyValue
	watch     jetstream.KeyWatcher
	precision time.Duration
	logger    *slog.Logger

	mu sync.Mutex
	// stored is what the bucket holds, by UseID.
	stored map[string]storedUse
	// pending are uses the bucket must learn, by UseID.
	pending map[string]time.Time
	wake    chan struct{}
}

type storedUse struct {
	at  time.Time
	rev uint64
}

var _ domain.KeyUses = (*LastUse)(nil)

// OpenLastUse creates the bucket if needed and reads it whole. ctx bounds
// the watch that keeps the memory up to date with the other replicas'
// writes: the context that stops keysd's workers. Run writes the uses.
func OpenLastUse(ctx context.Context, c *Conn, precision time.Duration, logger *slog.Logger) (*LastUse, error) {
	if precision <= 0 {
		precision = DefaultLastUsePrecision
	}
	var kv jetstream.KeyValue
	err := retry(ctx, func(ctx context.Context) (err error) {
		kv, err = c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      LastUseBucket,
			Description: "infrakeys: when each key was last used, to within the precision",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", LastUseBucket, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: watch %s: %w", LastUseBucket, err)
	}
	u := &LastUse{kv: kv, watch: w, precision: precision, logger: logger,
		stored: map[string]storedUse{}, pending: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("bus: watch %s ended while loading", LastUseBucket)
			}
			if e == nil { // every entry there was is loaded
				return u, nil
			}
			u.learn(e)
		case <-ctx.Done():
			_ = w.Stop()
			return nil, ctx.Err()
		}
	}
}

// Used implements domain.KeyUses.
func (u *LastUse) Used(id string, t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.stored[id]; ok && t.Sub(s.at) < u.precision {
		return // the common case: recorded recently enough
	}
	if p, ok := u.pending[id]; ok && !t.After(p) {
		return
	}
	u.pending[id] = t
	select {
	case u.wake <- struct{}{}:
	default: // a flush is due already
	}
}

// LastUsed implements domain.KeyUses. A use of this replica not yet
// written is included.
func (u *LastUse) LastUsed(id string) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ok := u.stored[id]
	if p, pending := u.pending[id]; pending && p.After(s.at) {
		return p, true
	}
	return s.at, ok
}

// Run writes the uses noted, and learns the other replicas' writes, until
// ctx ends; then it writes what is left.
func (u *LastUse) Run(ctx context.Context) error {
	defer func() { _ = u.watch.Stop() }()
	// A failed write is tried again at the next tick.
	tick := time.NewTicker(min(u.precision, time.Minute))
	defer tick.Stop()
	for {
		select {
		case e, ok := <-u.watch.Updates():
			if !ok {
				if ctx.Err() == nil {
					u.logger.Error("the watch of the last-use bucket ended: other replicas' writes no longer show here")
				}
				u.finalFlush(ctx)
				return nil
			}
			if e != nil {
				u.learn(e)
			}
		case <-u.wake:
			u.flush(ctx)
		case <-tick.C:
			u.flush(ctx)
		case <-ctx.Done():
			u.finalFlush(ctx)
			return nil
		}
	}
}

// finalFlush writes the uses left when keysd stops, for a little while.
func (u *LastUse) finalFlush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	u.flush(ctx)
}

// flush writes every pending use.
func (u *LastUse) flush(ctx context.Context) {
	u.mu.Lock()
	batch := make(map[string]time.Time, len(u.pending))
	for id, t := range u.pending {
		batch[id] = t
	}
	u.mu.Unlock()
	for id, t := range batch {
		err := u.write(ctx, id, t)
		if err != nil {
			u.logger.Warn("recording a key's last use failed; will retry", "useId", id, "err", err)
			continue
		}
		u.mu.Lock()
		if p, ok := u.pending[id]; ok && !p.After(t) {
			delete(u.pending, id)
		}
		u.mu.Unlock()
	}
}

// write records that id was used at t, unless the bucket holds a time
// less than the precision older already (another replica wrote it).
func (u *LastUse) write(ctx context.Context, id string, t time.Time) error {
	key := lastUsePrefix + Token(id)
	value, err := json.Marshal(lastUseRecord{At: t.UTC()})
	if err != nil {
		return err
	}
	for range 3 {
		u.mu.Lock()
		s, ok := u.stored[id]
		u.mu.Unlock()
		if ok && t.Sub(s.at) < u.precision {
			return nil
		}
		var rev uint64
		if ok {
			rev, err = u.kv.Update(ctx, key, value, s.rev)
		} else {
			rev, err = u.kv.Create(ctx, key, value)
		}
		if err == nil {
			u.remember(id, t, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return err
		}
		// Written meanwhile, by another replica: decide again on its value.
		e, err := u.kv.Get(ctx, key)
		if err != nil {
			return err
		}
		u.learn(e)
	}
	return fmt.Errorf("bus: %s keeps changing", key)
}

// learn takes in an entry of the bucket.
func (u *LastUse) learn(e jetstream.KeyValueEntry) {
	encoded, ok := strings.CutPrefix(e.Key(), lastUsePrefix)
	if !ok {
		return
	}
	id, err := Untoken(encoded)
	if err != nil {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		u.mu.Lock()
		delete(u.stored, id)
		u.mu.Unlock()
		return
	}
	var r lastUseRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		u.logger.Warn("unreadable last-use entry ignored", "key", e.Key(), "err", err)
		return
	}
	u.remember(id, r.At, e.Revision())
}

// remember records what the bucket holds for id at revision rev, unless
// a later revision is known already (the watch may bring a write after
// the writer learnt of it).
func (u *LastUse) remember(id string, t time.Time, rev uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s, ok := u.stored[id]; ok && s.rev >= rev {
		return
	}
	u.stored[id] = storedUse{at: t, rev: rev}
}
