// Package projections builds the read models of infrakeys in NATS KV
// buckets from the event log. A read model is a cache of the log, never the
// truth: every one can be rebuilt from the log at any time, and reads
// verify against the log's tail so they see every acknowledged write.
package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
)

// Projection is a read model that can be rebuilt from the log.
type Projection interface {
	// Name is stable: it names the bucket's marker and the durable
	// consumer. Renaming it makes the projection rebuild from the start.
	Name() string
	// Rebuild recomputes the read model from the whole log.
	Rebuild(ctx context.Context) error
}

// meta is the marker a projection keeps in its bucket. A bucket without it
// is new or was wiped, and is rebuilt before use.
type meta struct {
	Projection string    `json:"projection"`
	Schema     int       `json:"schema"`
	RebuiltAt  time.Time `json:"rebuiltAt"`
	LastSeq    uint64    `json:"lastSeq"`
}

const metaKey = "meta"

// openBucket creates the bucket if needed, and reports whether it may
// have lost acknowledged writes (openLocalBucket): then it must be
// re-checked against the log before use.
//
// On a cluster, reads of a bucket are direct gets that any replica
// answers, the nearest first, and a follower may lag: a
// document read may be stale. That is allowed for: reads add the owner's
// events after the document, read from the event stream's leader
// (docStore.load), and writes to a document are compare-and-set on the
// leader, so a stale read costs a retry, never a lost update.
func openBucket(ctx context.Context, c *bus.Conn, name, description string) (kv jetstream.KeyValue, mayHaveLost bool, err error) {
	if c.Embedded() && c.Replicas <= 1 {
		kv, err := openLocalBucket(ctx, c, name, description)
		return kv, !c.StoppedCleanly(), err
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      name,
		Description: description,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
	// A fresh cluster may have no JetStream leader yet, and replicas
	// starting together create the bucket at once: a single call can time
	// out where a retry succeeds.
	err = bus.Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = c.JS.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("projections: bucket %s: %w", name, err)
	}
	return kv, false, nil
}

// openLocalBucket opens a bucket on the embedded server whose writes are
// not fsynced one by one: the server acknowledges a document write before
// flushing it (PersistMode async), where the event log and the data keys
// fsync every write (SyncAlways). A document is derived from the log, so
// losing the last writes in a crash loses no data, as long as the bucket
// is re-checked against the log at the next start (ensureBuilt), which
// bus.Conn.StoppedCleanly tells. Without this, every document write
// waits for a disk sync of its own: a rebuild into an empty bucket is
// bound by the disk (docs/BENCHMARKS.md).
//
// A KV bucket's stream is configured here the way nats.go configures it
// (jetstream.KeyValueConfig has no persist mode). The mode cannot be
// changed on an existing stream, so a bucket made by an older keysd is
// deleted and made again: empty, without its marker, it is rebuilt.
func openLocalBucket(ctx context.Context, c *bus.Conn, name, description string) (jetstream.KeyValue, error) {
	cfg := jetstream.StreamConfig{
		Name:              "KV_" + name,
		Description:       description,
		Subjects:          []string{"$KV." + name + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          1,
		Discard:           jetstream.DiscardNew,
		Duplicates:        2 * time.Minute,
		AllowRollup:       true,
		DenyDelete:        true,
		AllowDirect:       true,
		PersistMode:       jetstream.AsyncPersistMode,
	}
	s, err := c.JS.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return nil, fmt.Errorf("projections: bucket %s: %w", name, err)
	case s.CachedInfo().Config.PersistMode != jetstream.AsyncPersistMode:
		if err := c.JS.DeleteStream(ctx, cfg.Name); err != nil {
			return nil, fmt.Errorf("projections: bucket %s: replace: %w", name, err)
		}
	}
	if _, err := c.JS.CreateOrUpdateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("projections: bucket %s: %w", name, err)
	}
	kv, err := c.JS.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("projections: bucket %s: %w", name, err)
	}
	return kv, nil
}

// needsRebuild reports whether the bucket lacks a current marker.
func needsRebuild(ctx context.Context, kv jetstream.KeyValue, name string, schema int) (bool, error) {
	var e jetstream.KeyValueEntry
	err := bus.Retry(ctx, func(ctx context.Context) (err error) {
		e, err = kv.Get(ctx, metaKey)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var m meta
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return true, nil
	}
	return m.Projection != name || m.Schema != schema, nil
}

// Replicas share each projection's durable consumer: JetStream hands every
// event to one of them, and gives an event that a replica took but never
// acknowledged (it died) to another after projectionAckWait. That bounds
// how long a dead replica's share of the work waits, so it is short, and a
// replica takes few events at a time (projectionBatch). A slow apply that
// outlives it is delivered twice, which costs work, not correctness:
// handle brings the owner's document up to the log with compare-and-set,
// so applying an event again, or out of order, changes nothing.
const (
	projectionAckWait = 5 * time.Second
	projectionBatch   = 64
)

// ConsumerName is the durable consumer that keeps projection name up to
// date, shared by every replica.
func ConsumerName(name string) string { return "projection-" + name }

// ErrNotRunning is returned by Lag for a projection whose consumer does
// not exist yet: it has not started.
var ErrNotRunning = errors.New("projection consumer not running")

// Lag returns how many events of the log projection name's consumer has
// not applied yet: those not delivered plus those delivered but not yet
// acknowledged. Reads stay correct while a projection lags (they read the
// log's tail); they only get slower.
func Lag(ctx context.Context, log *bus.EventLog, name string) (uint64, error) {
	c, err := log.Stream().Consumer(ctx, ConsumerName(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, fmt.Errorf("%s: %w", name, ErrNotRunning)
	}
	if err != nil {
		return 0, err
	}
	info := c.CachedInfo() // fetched by Consumer just now
	return info.NumPending + uint64(info.NumAckPending), nil
}

// runConsumer keeps the projection up to date from a durable consumer
// until ctx ends. handle must be idempotent: a message may be delivered
// more than once, and replicas share the consumer.
func runConsumer(ctx context.Context, log *bus.EventLog, logger *slog.Logger, name string, filters []string, handle func(context.Context, bus.Recorded) error) error {
	var cons jetstream.Consumer
	for {
		var err error
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err = log.Stream().CreateOrUpdateConsumer(cctx, jetstream.ConsumerConfig{
			Durable:        ConsumerName(name),
			Description:    "keeps the " + name + " read model up to date",
			FilterSubjects: filters,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        projectionAckWait,
			MaxAckPending:  1024,
		})
		cancel()
		if err == nil {
			break
		}
		logger.Warn("projection consumer not ready; retrying", "projection", name, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			return
		}
		r, err := bus.Decode(m.Subject(), md.Sequence.Stream, m.Data())
		if err != nil {
			logger.Error("projection: undecodable event; skipped", "projection", name, "seq", md.Sequence.Stream, "err", err)
			_ = m.Term()
			return
		}
		if err := handle(ctx, r); err != nil {
			logger.Warn("projection: apply failed; will retry", "projection", name, "seq", r.Seq, "err", err)
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.Ack()
	}, jetstream.PullMaxMessages(projectionBatch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if ctx.Err() == nil {
			logger.Debug("projection consumer", "projection", name, "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("projections: consume %s: %w", name, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}
