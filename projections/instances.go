package projections

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// instanceLayout keeps each resource instance's read model as one KV entry
// per key and per intake message, plus a small head, so that a new key
// writes a few small entries whatever the instance already holds (one
// document per instance was rewritten whole for every key: intake into
// one instance cost the square of its keys, and past a few thousand keys
// the document outgrew NATS's maximum message size):
//
//	instance.<id>              head: the instance without its keys, and
//	                           the log position the whole model reflects
//	instance.<id>.k.<name>     the key named name, or a tombstone once deleted
//	instance.<id>.i.<intake>   what became of one driver message
//
// (<id>, <name>, <intake>: bus.Token.) Every entry carries the sequence of
// the event that last set it, and an entry is only ever replaced by one
// from a later event (putEntry), so consumers on several replicas may
// apply one instance's events concurrently and in any order. The head
// moves to position v only after its writer made every entry reflect the
// events up to v, so a snapshot of an instance's entries (one watch: a
// prefix of the bucket's stream) read with its head at v holds exactly
// the state at v in the entries at or below v; entries above v are the
// later events, which the load applies again from the log.
type instanceLayout struct {
	kv  jetstream.KeyValue
	log *bus.EventLog
}

// instanceHead is the head entry: an instance without its keys.
type instanceHead struct {
	ID        string `json:"id"`
	Removed   bool   `json:"removed,omitempty"`
	RemovedBy string `json:"removedBy,omitempty"`
	Version   uint64 `json:"version"`
}

// instanceEntry is a key's or an intake record's entry.
type instanceEntry struct {
	Seq     uint64               `json:"seq"`
	Deleted bool                 `json:"deleted,omitempty"`
	Key     *domain.InfraKey     `json:"key,omitempty"`
	Record  *domain.IntakeRecord `json:"record,omitempty"`
}

func instanceHeadKey(id string) string { return "instance." + bus.Token(id) }

func instanceKeyEntry(id, name string) string { return instanceHeadKey(id) + ".k." + bus.Token(name) }

func instanceIntakeEntry(id, intakeID string) string {
	return instanceHeadKey(id) + ".i." + bus.Token(intakeID)
}

// entries returns what the event r changes in its instance's entries.
// prior returns the key an entry holds before r (nil: none, or deleted):
// a KeyExpired changes a key the event does not carry whole.
func entries(r bus.Recorded, prior func(entry string) (*domain.InfraKey, error)) (map[string]instanceEntry, error) {
	id := r.Event.Owner.ID
	// The domain's apply says what the event means: applied to an empty
	// instance, it leaves the key it creates and the intake record it
	// makes.
	in, err := domain.ApplyInstanceEvent(&domain.Instance{ID: id, Keys: []domain.InfraKey{}}, r.Event, r.Seq)
	if err != nil {
		return nil, err
	}
	out := map[string]instanceEntry{}
	for i := range in.Keys {
		out[instanceKeyEntry(id, in.Keys[i].Name)] = instanceEntry{Seq: r.Seq, Key: &in.Keys[i]}
	}
	for intakeID, rec := range in.Intake {
		out[instanceIntakeEntry(id, intakeID)] = instanceEntry{Seq: r.Seq, Record: &rec}
	}
	if r.Event.Type == domain.TypeKeyDeleted {
		var p domain.KeyDeleted
		if err := r.Event.Decode(&p); err != nil {
			return nil, err
		}
		out[instanceKeyEntry(id, p.Name)] = instanceEntry{Seq: r.Seq, Deleted: true}
	}
	if r.Event.Type == domain.TypeKeyExpired {
		var p domain.KeyExpired
		if err := r.Event.Decode(&p); err != nil {
			return nil, err
		}
		entry := instanceKeyEntry(id, p.Name)
		k, err := prior(entry)
		if err != nil {
			return nil, err
		}
		if k != nil {
			expired := *k
			expired.Expired = true
			out[entry] = instanceEntry{Seq: r.Seq, Key: &expired}
		}
	}
	return out, nil
}

// advanceInstance returns base after the events in rs, leaving base as it
// was. The domain removes a deleted key by copying every other key, so
// applying a cascade's batch of a thousand deletions to an instance of
// 10,000 keys one by one copies ten million keys (over a second); here
// the domain's apply still says what each event means, applied to the
// instance without its keys (as entries does), and the keys are then
// filtered once: every base key whose name the batch deleted goes, every
// key it created and did not delete again is added, in order, as
// applying the events one by one gives them.
func advanceInstance(base *domain.Instance, rs []bus.Recorded) (*domain.Instance, error) {
	shell := &domain.Instance{ID: base.ID, Removed: base.Removed, RemovedBy: base.RemovedBy, Version: base.Version, Intake: maps.Clone(base.Intake)}
	deleted := map[string]bool{}
	expired := map[string]bool{} // base keys the batch expired
	var added []domain.InfraKey
	for _, r := range rs {
		if r.Seq <= shell.Version {
			continue // applied already: the domain ignores it too
		}
		shell.Keys = []domain.InfraKey{}
		next, err := domain.ApplyInstanceEvent(shell, r.Event, r.Seq)
		if err != nil {
			return nil, err
		}
		shell = next
		if r.Event.Type == domain.TypeKeyDeleted {
			var p domain.KeyDeleted
			if err := r.Event.Decode(&p); err != nil {
				return nil, err
			}
			deleted[p.Name] = true
			added = slices.DeleteFunc(added, func(k domain.InfraKey) bool { return k.Name == p.Name })
		}
		if r.Event.Type == domain.TypeKeyExpired {
			var p domain.KeyExpired
			if err := r.Event.Decode(&p); err != nil {
				return nil, err
			}
			if i := slices.IndexFunc(added, func(k domain.InfraKey) bool { return k.Name == p.Name }); i >= 0 {
				added[i].Expired = true
			} else if !deleted[p.Name] {
				expired[p.Name] = true
			}
		}
		added = append(added, shell.Keys...)
	}
	keys := make([]domain.InfraKey, 0, len(base.Keys)+len(added))
	for _, k := range base.Keys {
		if !deleted[k.Name] {
			if expired[k.Name] {
				k.Expired = true // a copy: base stays as it was
			}
			keys = append(keys, k)
		}
	}
	shell.Keys = append(keys, added...)
	return shell, nil
}

// advanceHead returns h after r.
func advanceHead(h instanceHead, r bus.Recorded) (instanceHead, error) {
	in, err := domain.ApplyInstanceEvent(&domain.Instance{ID: h.ID, Removed: h.Removed, RemovedBy: h.RemovedBy, Version: h.Version, Keys: []domain.InfraKey{}}, r.Event, r.Seq)
	if err != nil {
		return h, err
	}
	return instanceHead{ID: h.ID, Removed: in.Removed, RemovedBy: in.RemovedBy, Version: in.Version}, nil
}

// read returns the instance id as stored, nil when it has no head: one
// watch of its entries, so a cold load costs in proportion to its keys.
func (l *instanceLayout) read(ctx context.Context, id string) (*domain.Instance, error) {
	head := instanceHeadKey(id)
	stored, err := l.scan(ctx, []string{head, head + ".>"})
	if err != nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	h, ok := stored[head]
	if !ok {
		return nil, nil
	}
	var hd instanceHead
	if err := json.Unmarshal(h.value, &hd); err != nil {
		return nil, fmt.Errorf("projections: %s: %w", head, err)
	}
	in := &domain.Instance{ID: id, Removed: hd.Removed, RemovedBy: hd.RemovedBy, Version: hd.Version, Keys: []domain.InfraKey{}}
	type keyAt struct {
		seq uint64
		key domain.InfraKey
	}
	var keys []keyAt
	for k, v := range stored {
		if k == head {
			continue
		}
		var e instanceEntry
		if err := json.Unmarshal(v.value, &e); err != nil {
			return nil, fmt.Errorf("projections: %s: %w", k, err)
		}
		switch {
		case e.Seq > hd.Version, e.Deleted:
			// After the head: the load applies its event again.
		case e.Key != nil:
			keys = append(keys, keyAt{e.Seq, *e.Key})
		case e.Record != nil:
			if in.Intake == nil {
				in.Intake = map[string]domain.IntakeRecord{}
			}
			intakeID, err := bus.Untoken(k[strings.LastIndexByte(k, '.')+1:])
			if err != nil {
				return nil, err
			}
			in.Intake[intakeID] = *e.Record
		}
	}
	// Keys in the order they were created, as applying the log gives them.
	slices.SortFunc(keys, func(a, b keyAt) int { return cmp.Compare(a.seq, b.seq) })
	in.Keys = make([]domain.InfraKey, len(keys))
	for i := range keys {
		in.Keys[i] = keys[i].key
	}
	return in, nil
}

// storedEntry is a KV entry's value and revision.
type storedEntry struct {
	value []byte
	rev   uint64
}

// scan returns every live entry whose key matches one of filters, read
// through one watch: one ordered consumer over the bucket's stream, so the
// entries are a consistent prefix of it.
func (l *instanceLayout) scan(ctx context.Context, filters []string) (map[string]storedEntry, error) {
	w, err := l.kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string]storedEntry{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil // the initial values are done
			}
			out[e.Key()] = storedEntry{e.Value(), e.Revision()}
		}
	}
}

// handle is the consumer's work for one event: bring the instance's
// entries and then its head up to the log, unless the head already
// reflects the event.
func (l *instanceLayout) handle(ctx context.Context, r bus.Recorded) error {
	id := r.Event.Owner.ID
	key := instanceHeadKey(id)
	for attempt := 0; attempt < 10; attempt++ {
		h, rev, err := l.head(ctx, id)
		if err != nil {
			return err
		}
		if h.Version >= r.Seq {
			return nil // a duplicate, or another consumer got there first
		}
		tail, err := readTail(ctx, l.log, bus.OwnerSubject(domain.InstanceOwner(id)), h.Version)
		if err != nil {
			return err
		}
		if len(tail) == 0 {
			return nil
		}
		changes := map[string]instanceEntry{}
		// The key an entry holds so far: as this tail left it, or as
		// stored (an entry from a later event, written by another
		// consumer, is kept by putEntry whatever this one computes).
		prior := func(entry string) (*domain.InfraKey, error) {
			if e, ok := changes[entry]; ok {
				return e.Key, nil
			}
			cur, err := l.kv.Get(ctx, entry)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
			}
			var e instanceEntry
			if err := json.Unmarshal(cur.Value(), &e); err != nil {
				return nil, fmt.Errorf("projections: %s: %w", entry, err)
			}
			return e.Key, nil
		}
		for _, t := range tail {
			es, err := entries(t, prior)
			if err != nil {
				return err
			}
			maps.Copy(changes, es) // a later event's entry replaces an earlier one's
			if h, err = advanceHead(h, t); err != nil {
				return err
			}
		}
		for k, e := range changes {
			if err := l.putEntry(ctx, k, e); err != nil {
				return err
			}
		}
		data, err := json.Marshal(h)
		if err != nil {
			return err
		}
		if err := putRevision(ctx, l.kv, key, data, rev); errors.Is(err, errMoved) {
			if err := domain.ConflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		} else if err != nil {
			return err
		}
		return nil
	}
	return domain.Errorf(domain.EUNAVAILABLE, "read model busy; retry")
}

// head reads an instance's head and its revision; a zero head (ID set)
// and revision 0 when there is none.
func (l *instanceLayout) head(ctx context.Context, id string) (instanceHead, uint64, error) {
	h := instanceHead{ID: id}
	e, err := l.kv.Get(ctx, instanceHeadKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return h, 0, nil
	}
	if err != nil {
		return h, 0, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	if err := json.Unmarshal(e.Value(), &h); err != nil || h.ID != id {
		// Unreadable: rebuild it from the start of the log.
		return instanceHead{ID: id}, e.Revision(), nil
	}
	return h, e.Revision(), nil
}

// putEntry stores e at key unless the entry there is from e's event or a
// later one: entries only move forward, whoever writes them and in
// whatever order.
func (l *instanceLayout) putEntry(ctx context.Context, key string, e instanceEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 10; attempt++ {
		var rev uint64
		cur, err := l.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
		default:
			var c instanceEntry
			if json.Unmarshal(cur.Value(), &c) == nil && c.Seq >= e.Seq {
				return nil
			}
			rev = cur.Revision()
		}
		if err := putRevision(ctx, l.kv, key, data, rev); errors.Is(err, errMoved) {
			if err := domain.ConflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		} else if err != nil {
			return err
		}
		return nil
	}
	return domain.Errorf(domain.EUNAVAILABLE, "read model busy; retry")
}

// putRevision writes data at key with compare-and-set on rev (0: must not
// exist); a lost race comes back as errMoved.
func putRevision(ctx context.Context, kv jetstream.KeyValue, key string, data []byte, rev uint64) error {
	var err error
	if rev == 0 {
		_, err = kv.Create(ctx, key, data)
	} else {
		_, err = kv.Update(ctx, key, data, rev)
	}
	// See docStore.store for the two codes.
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %w", errMoved, err)
	}
	return err
}

// rebuild recomputes every instance's entries from the whole log, while
// the service runs: an entry or head is written when it differs from what
// the log says, unless what is stored is from an event after the replay
// (a consumer already applied it); entries and heads the log does not
// account for are removed. It returns the last sequence replayed.
func (l *instanceLayout) rebuild(ctx context.Context) (uint64, error) {
	want := map[string]instanceEntry{}
	heads := map[string]instanceHead{}
	last, err := l.log.Replay(ctx, bus.ReplayOptions{Subjects: []string{bus.KindSubjects(domain.OwnerInstance)}}, func(r bus.Recorded) error {
		es, err := entries(r, func(entry string) (*domain.InfraKey, error) { return want[entry].Key, nil })
		if err != nil {
			return err
		}
		maps.Copy(want, es)
		id := r.Event.Owner.ID
		h, ok := heads[id]
		if !ok {
			h = instanceHead{ID: id}
		}
		heads[id], err = advanceHead(h, r)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("projections: rebuild instances: %w", err)
	}
	stored, err := l.scan(ctx, []string{"instance.>"})
	if err != nil {
		return 0, fmt.Errorf("projections: rebuild instances: read: %w", err)
	}
	// Entries first, heads second: a head must not reflect a position
	// its entries do not (read), even while this runs.
	var entryWrites, headWrites []rebuildWrite
	for key, e := range want {
		data, err := json.Marshal(e)
		if err != nil {
			return 0, err
		}
		s, ok := stored[key]
		if ok && (bytes.Equal(s.value, data) || storedSeq(s.value) > last) {
			continue
		}
		entryWrites = append(entryWrites, rebuildWrite{key, data, s.rev})
	}
	for id, h := range heads {
		data, err := json.Marshal(h)
		if err != nil {
			return 0, err
		}
		key := instanceHeadKey(id)
		s, ok := stored[key]
		if ok && (bytes.Equal(s.value, data) || storedVersion(s.value) > last) {
			continue
		}
		headWrites = append(headWrites, rebuildWrite{key, data, s.rev})
	}
	for key, s := range stored {
		if _, ok := want[key]; ok {
			continue
		}
		if id, isHead := strings.CutPrefix(key, "instance."); isHead && !strings.Contains(id, ".") {
			if id, err := bus.Untoken(id); err == nil {
				if _, ok := heads[id]; ok {
					continue
				}
			}
			headWrites = append(headWrites, rebuildWrite{key: key})
			continue
		}
		if storedSeq(s.value) > last {
			continue // written for an event after the replay
		}
		entryWrites = append(entryWrites, rebuildWrite{key: key})
	}
	if err := l.writeAll(ctx, entryWrites); err != nil {
		return 0, err
	}
	return last, l.writeAll(ctx, headWrites)
}

// rebuildWrite is one entry a rebuild writes (data) or removes (nil).
type rebuildWrite struct {
	key  string
	data []byte
	rev  uint64 // compare-and-set: the revision the rebuild saw
}

// writeAll makes the writes, several at a time: each is a round trip.
func (l *instanceLayout) writeAll(ctx context.Context, writes []rebuildWrite) error {
	work := make(chan rebuildWrite)
	errs := make(chan error, rebuildWorkers)
	var wg sync.WaitGroup
	for range rebuildWorkers {
		wg.Go(func() {
			for w := range work {
				var err error
				if w.data == nil {
					err = l.kv.Purge(ctx, w.key)
				} else if err = putRevision(ctx, l.kv, w.key, w.data, w.rev); errors.Is(err, errMoved) {
					// A consumer wrote it meanwhile, from the log: it is
					// at least as new as the replay.
					err = nil
				}
				if err != nil {
					errs <- fmt.Errorf("projections: rebuild %s: %w", w.key, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for _, w := range writes {
		select {
		case work <- w:
		case err = <-errs:
			break feed
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	return err
}

// storedSeq returns the event sequence an entry was written for; 0 when
// it does not decode.
func storedSeq(value []byte) uint64 {
	var e instanceEntry
	if json.Unmarshal(value, &e) != nil {
		return 0
	}
	return e.Seq
}

// storedVersion returns the version a head was written for; 0 when it
// does not decode.
func storedVersion(value []byte) uint64 {
	var h instanceHead
	if json.Unmarshal(value, &h) != nil {
		return 0
	}
	return h.Version
}
