// Command livekeys is an example audit consumer: it replays the infrakeys
// event log from its first event and rebuilds the set of live keys, using
// nothing but nats.go and the event catalogue (docs/events.md). It prints
// the set as JSON once it has caught up with the log.
//
//	go run ./examples/livekeys --nats-url nats://127.0.0.1:4222 --nkey data/nats/audit.nk
package main

import (
	"context"
	"encoding/json"
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

// key is a live key: what KeyCreated and KeyUpdated say of it.
type key struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
}

// liveKeys is the result: keys by owner kind, then owner id, sorted by
// name.
type liveKeys map[string]map[string][]key

func main() {
	url := flag.String("nats-url", "nats://127.0.0.1:4222", "NATS to read from")
	nkey := flag.String("nkey", "", "NKey seed file of the audit role")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	live, err := replay(ctx, *url, *nkey)
	if err != nil {
		fmt.Fprintln(os.Stderr, "livekeys:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(live, "", "  ")
	fmt.Println(string(out))
}

func replay(ctx context.Context, url, seed string) (liveKeys, error) {
	opts := []nats.Option{nats.Name("livekeys"), nats.CustomInboxPrefix("_INBOX.audit")}
	if seed != "" {
		o, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, "KEYSD_EVENTS")
	if err != nil {
		return nil, err
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, err
	}
	// Owner kind -> owner id -> key name -> key.
	state := map[string]map[string]map[string]key{}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	for pending := info.NumPending; pending > 0; {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			return nil, err
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, err
		}
		pending = md.NumPending
		var e event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			return nil, fmt.Errorf("event at %d: %w", md.Sequence.Stream, err)
		}
		if err := apply(state, e); err != nil {
			return nil, fmt.Errorf("event %s at %d: %w", e.ID, md.Sequence.Stream, err)
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
// skipped: new types are additive (docs/events.md, compatibility).
func apply(state map[string]map[string]map[string]key, e event) error {
	keys := func() map[string]key {
		if state[e.Owner.Kind] == nil {
			state[e.Owner.Kind] = map[string]map[string]key{}
		}
		if state[e.Owner.Kind][e.Owner.ID] == nil {
			state[e.Owner.Kind][e.Owner.ID] = map[string]key{}
		}
		return state[e.Owner.Kind][e.Owner.ID]
	}
	switch e.Type {
	case "KeyCreated", "KeyUpdated":
		var k key
		if err := json.Unmarshal(e.Data, &k); err != nil {
			return err
		}
		keys()[k.Name] = k
	case "KeyDeleted":
		var k key
		if err := json.Unmarshal(e.Data, &k); err != nil {
			return err
		}
		delete(keys(), k.Name)
	}
	return nil
}
