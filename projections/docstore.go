package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// docStore keeps one KV document per owner of one kind: the owner's state
// as of a log position. It is how every read model here works:
//
//   - load = the document plus the owner's events after it, read from the
//     stream leader, so a read sees every acknowledged write even when the
//     document lags or comes from a lagging follower;
//   - refresh = bring the document up to date with the log, replacing it
//     only if it did not change meanwhile (compare-and-set on the KV
//     revision), so concurrent writers, consumers and replicas never lose
//     an update and applying an event twice changes nothing.
type docStore[T any] struct {
	kv      jetstream.KeyValue
	js      jetstream.JetStream // for pipelined document writes
	log     *bus.EventLog
	kind    string // owner kind
	prefix  string // KV key prefix, e.g. "account."
	apply   func(doc *T, e domain.Event, seq uint64) (*T, error)
	version func(doc *T) uint64
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

// catchUp applies the owner's events after doc's version.
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

// load returns the owner's state as of the last event in the log; nil if
// it has no events.
func (s *docStore[T]) load(ctx context.Context, id string) (*T, error) {
	doc, _, err := s.document(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.catchUp(ctx, id, doc)
}

// append appends events if the owner's version is still expected, then
// brings its document up to date, so the writer's next read sees them.
//
// Once the append succeeded the write is done, whatever happens to the
// document: if it cannot be stored (other replicas keep moving it, the
// bucket is unavailable) the state is computed from the log instead, and
// the projection consumer brings the document up to date later.
func (s *docStore[T]) append(ctx context.Context, id string, expected uint64, events []domain.Event) (*T, error) {
	if _, err := s.log.Append(ctx, s.owner(id), expected, events); err != nil {
		return nil, err
	}
	doc, err := s.refresh(ctx, id)
	if err != nil {
		doc, err = s.load(ctx, id)
		// The events are in the log even if their result cannot be read.
		return doc, domain.OutcomeUnknown(err)
	}
	return doc, nil
}

// refresh brings the document of id up to date with the log.
func (s *docStore[T]) refresh(ctx context.Context, id string) (*T, error) {
	for attempt := 0; attempt < 10; attempt++ {
		doc, rev, err := s.document(ctx, id)
		if err != nil {
			return nil, err
		}
		var before uint64
		if doc != nil {
			before = s.version(doc)
		}
		after, err := s.catchUp(ctx, id, doc)
		if err != nil {
			return nil, err
		}
		if after == nil || s.version(after) == before {
			return after, nil
		}
		if err := s.store(ctx, id, after, rev); errors.Is(err, errMoved) {
			// Someone else moved it, or is moving it, or our read came
			// from a follower that lags: read again after a pause.
			if err := domain.ConflictBackoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		} else if err != nil {
			return nil, err
		}
		return after, nil
	}
	return nil, domain.Errorf(domain.EUNAVAILABLE, "read model busy; retry")
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
// up to date unless it already reflects the event.
func (s *docStore[T]) handle(ctx context.Context, r bus.Recorded) error {
	doc, _, err := s.document(ctx, r.Event.Owner.ID)
	if err != nil {
		return err
	}
	if doc != nil && s.version(doc) >= r.Seq {
		return nil // a duplicate, or the writer got there first
	}
	_, err = s.refresh(ctx, r.Event.Owner.ID)
	return err
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

// all returns every document of this kind (in no order).
func (s *docStore[T]) all(ctx context.Context) ([]*T, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, s.prefix+"*")
	if err != nil {
		return nil, domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := make([]*T, 0, len(keys))
	for _, k := range keys {
		id, err := bus.Untoken(k[len(s.prefix):])
		if err != nil {
			return nil, err
		}
		doc, err := s.load(ctx, id)
		if err != nil {
			return nil, err
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
	return out, nil
}
