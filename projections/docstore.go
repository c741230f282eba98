package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// docStore keeps the read model of one kind of owner: by default one KV
// document per owner, the owner's state as of a log position (instances
// keep theirs per key instead: instanceLayout). It is how every read
// model here works:
//
//   - load = the owner's state, from memory (stateCache) or else from the
//     bucket, plus the owner's events after it, read from the stream
//     leader, so a read sees every acknowledged write even when the state
//     lags or came from a lagging follower. A state that is current costs
//     one round trip (the leader answering that nothing follows it);
//   - append = append the events, then apply them to the state they were
//     decided against: the writer's next read (on this replica from
//     memory, on any other from the log) sees them without reading them
//     back;
//   - the bucket is written by the projection's consumer (handle), off the
//     request path: compare-and-set on the KV revision, so concurrent
//     consumers and replicas never lose an update, and applying an event
//     twice changes nothing.
type docStore[T any] struct {
	kv      jetstream.KeyValue
	js      jetstream.JetStream // for pipelined document writes
	log     *bus.EventLog
	kind    string // owner kind
	prefix  string // KV key prefix, e.g. "account."
	apply   func(doc *T, e domain.Event, seq uint64) (*T, error)
	version func(doc *T) uint64
	clone   func(doc *T) *T // a copy apply may change (states.go)
	// extend, when set, is a copy apply may change that shares the
	// slices' spare capacity (stateCache.claim).
	extend func(doc *T) *T
	// advanceMany, when set, applies several events to a state at once
	// without changing it, where applying them one by one would cost too
	// much (advanceInstance).
	advanceMany func(doc *T, rs []bus.Recorded) (*T, error)
	cache       *stateCache[T]
	// stored reads an owner's state from the bucket when it is not one
	// document (instanceLayout.read); nil for one document per owner.
	stored func(ctx context.Context, id string) (*T, error)
}

func (s *docStore[T]) key(id string) string { return s.prefix + bus.Token(id) }

func (s *docStore[T]) owner(id string) domain.Owner { return domain.Owner{Kind: s.kind, ID: id} }

// document reads the stored document of id and its KV revision; nil when
// there is none.
func (s *docStore[T]) document(ctx context.Context, id string) (*T, uint64, error) {
	e, err := s.kv.Get(ctx, s.key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	doc := new(T)
	if err := json.Unmarshal(e.Value(), doc); err != nil {
		return nil, 0, fmt.Errorf("projections: document %s: %w", s.key(id), err)
	}
	return doc, e.Revision(), nil
}

// storedVersion reads the version and KV revision of id's document
// without decoding the rest of it; 0, 0 when there is none.
func (s *docStore[T]) storedVersion(ctx context.Context, id string) (version, rev uint64, err error) {
	e, err := s.kv.Get(ctx, s.key(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	if v, ok := lastVersion(e.Value()); ok {
		return v, e.Revision(), nil
	}
	var v struct {
		Version uint64 `json:"version"`
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		// Unreadable: rewrite it from the log.
		return 0, e.Revision(), nil
	}
	return v.Version, e.Revision(), nil
}

// lastVersion reads a document's version without decoding the document:
// the domain's states end with it, so their JSON ends `"version":N}`.
// ok is false for anything else.
func lastVersion(doc []byte) (uint64, bool) {
	const field = `"version":`
	i := bytes.LastIndex(doc, []byte(field))
	if i < 0 {
		return 0, false
	}
	digits, ok := bytes.CutSuffix(doc[i+len(field):], []byte("}"))
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(digits), 10, 64)
	return v, err == nil
}

// catchUp applies the owner's events after doc's version. doc must not
// be shared (it may be changed).
func (s *docStore[T]) catchUp(ctx context.Context, id string, doc *T) (*T, error) {
	var after uint64
	if doc != nil {
		after = s.version(doc)
	}
	tail, err := s.log.ReadOwner(ctx, s.owner(id), after)
	if err != nil {
		return nil, err
	}
	for _, r := range tail {
		if doc, err = s.apply(doc, r.Event, r.Seq); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// advance returns id's state st after the events in rs, leaving st as it
// was: st may be a cached state, which every reader shares.
func (s *docStore[T]) advance(id string, st *T, rs []bus.Recorded) (*T, error) {
	if len(rs) == 0 {
		return st, nil
	}
	if st != nil && len(rs) > 1 && s.advanceMany != nil {
		return s.advanceMany(st, rs)
	}
	if st != nil {
		if s.extend != nil && s.cache.claim(id, st) {
			st = s.extend(st)
		} else {
			st = s.clone(st)
		}
	}
	var err error
	for _, r := range rs {
		if st, err = s.apply(st, r.Event, r.Seq); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// load returns the owner's state as of the last event in the log; nil if
// it has no events. The state is shared: callers must not change it.
func (s *docStore[T]) load(ctx context.Context, id string) (*T, error) {
	st, version, cached := s.cache.get(id)
	if !cached {
		var err error
		if s.stored != nil {
			st, err = s.stored(ctx, id)
		} else {
			st, _, err = s.document(ctx, id)
		}
		if err != nil {
			return nil, err
		}
		if st != nil {
			version = s.version(st)
		}
	}
	tail, err := readTail(ctx, s.log, bus.OwnerSubject(s.owner(id)), version)
	if err != nil {
		return nil, err
	}
	if cached && len(tail) == 0 {
		return st, nil
	}
	if st, err = s.advance(id, st, tail); err != nil {
		return nil, err
	}
	if st != nil {
		s.cache.put(id, st, s.version(st))
	}
	return st, nil
}

// append appends events if the owner's version is still expected, and
// returns the owner's state with them applied.
//
// The writer does not read its events back: a successful append with
// expected means the owner's events after expected are exactly these, in
// this order, at consecutive sequences ending at the one the log returns
// (one publish, or one atomic batch, which the server stores under one
// lock at consecutive sequences). So the state decided against, still in
// the cache at version expected, plus these events is the new state. The
// bucket catches up through the projection's consumer; reads do not wait
// for it (load reads the log's tail).
func (s *docStore[T]) append(ctx context.Context, id string, expected uint64, events []domain.Event) (*T, error) {
	last, err := s.log.Append(ctx, s.owner(id), expected, events)
	if err != nil {
		return nil, err
	}
	st, version, cached := s.cache.get(id)
	if expected == 0 {
		st, version, cached = nil, 0, true // the owner had no events
	}
	if cached && version == expected {
		// A batch is contiguous; events of other owners recorded with the
		// owner's (bus.EventLog.Append) follow them and are not its own.
		first := last - uint64(len(events)) + 1
		owner := s.owner(id)
		rs := make([]bus.Recorded, 0, len(events))
		for i, e := range events {
			if e.Owner == owner {
				rs = append(rs, bus.Recorded{Seq: first + uint64(i), Subject: bus.OwnerSubject(e.Owner), Event: e})
			}
		}
		if after, err := s.advance(id, st, rs); err == nil && after != nil {
			s.cache.put(id, after, rs[len(rs)-1].Seq)
			return after, nil
		}
	}
	// The state decided against is no longer cached (evicted, or a
	// concurrent load moved past it): read the log.
	st, err = s.load(ctx, id)
	if err != nil {
		// The events are in the log even if their result cannot be read.
		return nil, domain.OutcomeUnknown(err)
	}
	return st, nil
}

// errMoved: the document is no longer at the revision a store expected.
var errMoved = errors.New("projections: document changed meanwhile")

// store writes a document with compare-and-set on rev (0: must not exist).
// A lost race comes back as errMoved.
func (s *docStore[T]) store(ctx context.Context, id string, doc *T, rev uint64) error {
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = s.kv.Create(ctx, s.key(id), data)
	} else {
		_, err = s.kv.Update(ctx, s.key(id), data, rev)
	}
	// A compare-and-set conflict is error 10071 on a single server, which
	// nats.go reports as ErrKeyExists, and 10164 on replicated buckets,
	// which Update reports only as ErrKeyRevisionMismatch.
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %w", errMoved, err)
	}
	return err
}

// handle is the consumer's work for one event: bring the owner's document
// up to date unless it already reflects the event. The state comes from
// load (memory and the log's tail); the write is compare-and-set on the
// document's revision, so a consumer on another replica that wrote a
// newer state meanwhile makes this one read again, never go back.
func (s *docStore[T]) handle(ctx context.Context, r bus.Recorded) error {
	id := r.Event.Owner.ID
	for attempt := 0; attempt < 10; attempt++ {
		stored, rev, err := s.storedVersion(ctx, id)
		if err != nil {
			return err
		}
		if stored >= r.Seq {
			return nil // a duplicate, or another consumer got there first
		}
		// A state in memory that reflects the event will do (the writer's,
		// on its replica): the document need not be the newest, only move
		// forward, which the compare-and-set below sees to.
		st, version, cached := s.cache.get(id)
		if !cached || version < r.Seq {
			if st, err = s.load(ctx, id); err != nil {
				return err
			}
		}
		if st == nil || s.version(st) <= stored {
			return nil
		}
		if err := s.store(ctx, id, st, rev); errors.Is(err, errMoved) {
			// Someone else moved it, or our read came from a follower
			// that lags: read again after a pause.
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

// rebuild recomputes every document of this kind from the whole log, while
// the service runs: each document is replaced by the log's state at the
// moment of writing, never an older one, and documents of owners the log
// does not know are removed. It returns the last sequence replayed.
func (s *docStore[T]) rebuild(ctx context.Context) (uint64, error) {
	docs := map[string]*T{}
	last, err := s.log.Replay(ctx, bus.ReplayOptions{Kinds: []string{s.kind}}, func(r bus.Recorded) error {
		doc, err := s.apply(docs[r.Event.Owner.ID], r.Event, r.Seq)
		if err != nil {
			return err
		}
		docs[r.Event.Owner.ID] = doc
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("projections: rebuild %s: %w", s.kind, err)
	}
	if err := s.replaceAll(ctx, docs); err != nil {
		return 0, err
	}
	return last, s.removeUnknown(ctx, docs)
}

// rebuildWorkers write rebuilt documents concurrently: each write is a few
// round trips to NATS, which overlap.
const rebuildWorkers = 16

// replaceAll replaces every document in docs. Documents the bucket does
// not have yet (all of them, in a bucket rebuilt from nothing) are created
// in one pipeline of asynchronous publishes, each a create that fails if
// the document appeared meanwhile; the others, and those that appeared,
// are compared and replaced one by one (replace).
func (s *docStore[T]) replaceAll(ctx context.Context, docs map[string]*T) error {
	existing, err := s.keys(ctx)
	if err != nil {
		return err
	}
	var fresh, known []string
	for id := range docs {
		if existing[s.key(id)] {
			known = append(known, id)
		} else {
			fresh = append(fresh, id)
		}
	}
	appeared, err := s.createAll(ctx, fresh, docs)
	if err != nil {
		return err
	}
	return s.replaceEach(ctx, append(known, appeared...), docs)
}

// createAll creates the documents of ids, pipelined, and returns the ids
// whose document appeared in the bucket meanwhile (a writer or the
// projection's consumer got there first): those are left to replace.
//
// A created document reflects the log as replayed, without the owner's
// events appended since: those are in the log, and the projection's
// consumer brings the document up to date when it handles them (handle),
// as it does after any writer that stopped between its append and its
// document.
func (s *docStore[T]) createAll(ctx context.Context, ids []string, docs map[string]*T) ([]string, error) {
	acks := make([]jetstream.PubAckFuture, len(ids))
	for i, id := range ids {
		data, err := json.Marshal(docs[id])
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg("$KV." + s.kv.Bucket() + "." + s.key(id))
		m.Data = data
		// Revision 0: only if the key has no document, as kv.Create.
		if acks[i], err = s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			return nil, fmt.Errorf("projections: rebuild %s %s: %w", s.kind, id, err)
		}
	}
	var appeared []string
	for i, ack := range acks {
		select {
		case <-ack.Ok():
		case err := <-ack.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				appeared = append(appeared, ids[i])
				continue
			}
			return nil, fmt.Errorf("projections: rebuild %s %s: %w", s.kind, ids[i], err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return appeared, nil
}

// keys returns the KV keys of this kind's documents.
func (s *docStore[T]) keys(ctx context.Context) (map[string]bool, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, s.prefix+"*")
	if err != nil {
		return nil, fmt.Errorf("projections: list %s: %w", s.prefix, err)
	}
	keys := map[string]bool{}
	for k := range lister.Keys() {
		keys[k] = true
	}
	return keys, nil
}

// replaceEach replaces the documents of ids, a few at a time.
func (s *docStore[T]) replaceEach(ctx context.Context, list []string, docs map[string]*T) error {
	ids := make(chan string)
	errs := make(chan error, rebuildWorkers)
	var wg sync.WaitGroup
	for range rebuildWorkers {
		wg.Go(func() {
			for id := range ids {
				if err := s.replace(ctx, id, docs[id]); err != nil {
					errs <- fmt.Errorf("projections: rebuild %s %s: %w", s.kind, id, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for _, id := range list {
		select {
		case ids <- id:
		case err = <-errs:
			break feed
		}
	}
	close(ids)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	return err
}

// replace writes rebuilt (plus any later events) over whatever document id
// has, even one that does not decode.
func (s *docStore[T]) replace(ctx context.Context, id string, rebuilt *T) error {
	data, err := json.Marshal(rebuilt)
	if err != nil {
		return err
	}
	for attempt := 0; attempt < 10; attempt++ {
		var rev uint64
		e, err := s.kv.Get(ctx, s.key(id))
		switch {
		case err == nil:
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		clone := new(T)
		if err := json.Unmarshal(data, clone); err != nil {
			return err
		}
		doc, err := s.catchUp(ctx, id, clone)
		if err != nil {
			return err
		}
		if rev != 0 && s.same(e.Value(), doc) {
			return nil // already right: no write, no fsync
		}
		if err := s.store(ctx, id, doc, rev); errors.Is(err, errMoved) {
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

// same reports whether stored is exactly what doc encodes to.
func (s *docStore[T]) same(stored []byte, doc *T) bool {
	data, err := json.Marshal(doc)
	return err == nil && bytes.Equal(stored, data)
}

// removeUnknown deletes this kind's documents of owners without events.
func (s *docStore[T]) removeUnknown(ctx context.Context, known map[string]*T) error {
	stored, err := s.keys(ctx)
	if err != nil {
		return err
	}
	for id := range known {
		delete(stored, s.key(id))
	}
	for k := range stored {
		if err := s.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("projections: remove stale %s: %w", k, err)
		}
	}
	return nil
}
