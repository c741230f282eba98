// Command livekeys is an example audit consumer: it replays the infrakeys
// event log from its first event and rebuilds the set of live keys, using
// nothing but nats.go and the event catalogue (docs/events.md). It prints
// the set as JSON once it has caught up with the log.
//
//	KEYSD_NATS_LISTEN=127.0.0.1:4222 go run ./cmd/keysd &
//	go run ./examples/livekeys --nats-url nats://127.0.0.1:4222 --nkey data/nats/audit.nk
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// event is the envelope of docs/events.md, with the fields this consumer
// needs.
type event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Version int    `json:"version"`
	Owner   struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"owner"`
	Data json.RawMessage `json:"data"`
}

// key is a live key: what KeyCreated and KeyUpdated say of it. Infra keys
// have an id, account keys do not.
type key struct {
	ID                string `json:"id,omitempty"`
	Name              string `json:"name"`
	Fingerprint       string `json:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256"`
	PublicKey         string `json:"key"`
}

// liveKeys is the result: keys by owner kind, then owner id, sorted by
// name. Owners without keys are left out.
type liveKeys map[string]map[string][]key

func main() {
	url := flag.String("nats-url", "nats://127.0.0.1:4222", "NATS to read from")
	nkey := flag.String("nkey", "", "NKey seed file of the audit role (keysd writes <data-dir>/nats/audit.nk)")
	creds := flag.String("creds", "", "or a credentials file, on an external cluster")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	live, err := replay(ctx, *url, *nkey, *creds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "livekeys:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(live, "", "  ")
	fmt.Println(string(out))
}

func replay(ctx context.Context, url, seed, creds string) (liveKeys, error) {
	// The server refuses what the audit role may not do asynchronously;
	// end at once instead of waiting for a request to time out.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	opts := []nats.Option{
		nats.Name("livekeys"),
		// The audit role may receive on its own inboxes only.
		nats.CustomInboxPrefix("_INBOX.audit"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				cancel(err)
			}
		}),
	}
	switch {
	case seed != "":
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	case creds != "":
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	live, err := fold(ctx, nc)
	if cause := context.Cause(ctx); err != nil && cause != nil {
		return nil, cause
	}
	return live, err
}

// fold replays the stream from its first event to the last one stored
// when it started, and folds the events into the live keys.
func fold(ctx context.Context, nc *nats.Conn) (liveKeys, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KEYSD_EVENTS")
	if err != nil {
		return nil, err
	}
	// An ordered consumer: ephemeral, in stream order, recreated by
	// nats.go where it left off should a message go missing.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	// Owner kind -> owner id -> key name -> key.
	state := map[string]map[string]map[string]key{}
	if info.NumPending > 0 {
		// Messages, not Next: on an ordered consumer every Next makes a
		// new consumer on the server.
		it, err := cons.Messages()
		if err != nil {
			return nil, err
		}
		defer it.Stop()
		stop := context.AfterFunc(ctx, it.Stop)
		defer stop()
		for {
			m, err := it.Next()
			if err != nil {
				if ctx.Err() != nil {
					return nil, context.Cause(ctx)
				}
				return nil, err
			}
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			var e event
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				return nil, fmt.Errorf("event at %d: %w", md.Sequence.Stream, err)
			}
			if err := apply(state, e); err != nil {
				return nil, fmt.Errorf("event %s at %d: %w", e.ID, md.Sequence.Stream, err)
			}
			if md.NumPending == 0 {
				break
			}
		}
	}
	live := liveKeys{}
	for kind, owners := range state {
		for id, keys := range owners {
			if len(keys) == 0 {
				continue
			}
			if live[kind] == nil {
				live[kind] = map[string][]key{}
			}
			for _, k := range keys {
				live[kind][id] = append(live[kind][id], k)
			}
			sort.Slice(live[kind][id], func(i, j int) bool { return live[kind][id][i].Name < live[kind][id][j].Name })
		}
	}
	return live, nil
}

// apply folds one event into the state. Types it does not know are
// skipped: new types may appear at any time (docs/events.md,
// compatibility). A version it does not know of a type it folds is an
// error: a breaking change, which this reader was not written for.
func apply(state map[string]map[string]map[string]key, e event) error {
	switch e.Type {
	case "KeyCreated", "KeyUpdated", "KeyDeleted":
	default:
		return nil
	}
	if e.Version != 1 {
		return fmt.Errorf("%s version %d: this reader knows version 1 only", e.Type, e.Version)
	}
	var k key
	if err := json.Unmarshal(e.Data, &k); err != nil {
		return err
	}
	if state[e.Owner.Kind] == nil {
		state[e.Owner.Kind] = map[string]map[string]key{}
	}
	keys := state[e.Owner.Kind][e.Owner.ID]
	if keys == nil {
		keys = map[string]key{}
		state[e.Owner.Kind][e.Owner.ID] = keys
	}
	// A key's name is unique within its owner, and every event about a
	// key names it: KeyUpdated carries the key's whole new state.
	if e.Type == "KeyDeleted" {
		delete(keys, k.Name)
	} else {
		keys[k.Name] = k
	}
	return nil
}
