package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// AccountsName is the stable name of the accounts projection. Renaming it
// replays the whole log into a new read model.
const AccountsName = "accounts"

// accountsSchema is the document layout version; changing it makes every
// node rebuild the bucket at start-up.
const accountsSchema = 1

// accountsCacheBytes bounds the accounts held in memory (stateCache):
// about 8,000 accounts of 10 keys.
const accountsCacheBytes = 32 << 20

// AccountsBucket holds one document per account: the account and its keys,
// with the log position it reflects.
const AccountsBucket = "KEYSD_ACCOUNTS"

// Accounts is the accounts read model, and the domain's repository for
// accounts: it loads an account from memory or its document, plus any
// events the log has after it, so every read sees every acknowledged
// write; an append applies its events to the account it was decided
// against, and the projection's consumer writes the document.
type Accounts struct {
	kv     jetstream.KeyValue
	docs   *docStore[domain.Account]
	log    *bus.EventLog
	logger *slog.Logger
}

var _ domain.AccountRepository = (*Accounts)(nil)

// OpenAccounts opens the bucket, rebuilding it from the log if it is new,
// wiped, or of an older layout, and re-checking it after a crash of the
// embedded server.
func OpenAccounts(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*Accounts, error) {
	kv, mayHaveLost, err := openBucket(ctx, c, AccountsBucket, "infrakeys read model: accounts and their public keys")
	if err != nil {
		return nil, err
	}
	p := &Accounts{kv: kv, log: log, logger: logger, docs: &docStore[domain.Account]{
		kv: kv, js: c.JS, log: log, kind: domain.OwnerAccount, prefix: "account.",
		apply:   domain.ApplyAccountEvent,
		version: func(a *domain.Account) uint64 { return a.Version },
		clone:   cloneAccount,
		cache:   newStateCache(accountsCacheBytes, accountSize),
	}}
	if err := ensureBuilt(ctx, c, kv, mayHaveLost, p, accountsSchema, logger); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements Projection.
func (p *Accounts) Name() string { return AccountsName }

// Run keeps the read model up to date from the log until ctx ends: it
// writes every account's document (writers do not; reads never wait for
// it, they read the log's tail).
func (p *Accounts) Run(ctx context.Context) error {
	return runConsumer(ctx, p.log, p.logger, AccountsName, []string{bus.KindSubjects(domain.OwnerAccount)}, p.docs.handle)
}

// LoadAccount returns the account as of the last event in the log. nil,
// nil when there is no account.
func (p *Accounts) LoadAccount(ctx context.Context, login string) (*domain.Account, error) {
	return p.docs.load(ctx, login)
}

// AppendAccount appends events for login if its version is still expected,
// and returns the account with them applied.
func (p *Accounts) AppendAccount(ctx context.Context, login string, expected uint64, events []domain.Event) (*domain.Account, error) {
	return p.docs.append(ctx, login, expected, events)
}

// Rebuild recomputes every account document from the whole log.
func (p *Accounts) Rebuild(ctx context.Context) error {
	last, err := p.docs.rebuild(ctx)
	if err != nil {
		return err
	}
	return writeMarker(ctx, p.kv, AccountsName, accountsSchema, last)
}

// writeMarker records that the bucket was built from the log up to last.
func writeMarker(ctx context.Context, kv jetstream.KeyValue, name string, schema int, last uint64) error {
	m, _ := json.Marshal(meta{Projection: name, Schema: schema, RebuiltAt: time.Now().UTC(), LastSeq: last})
	if _, err := kv.Put(ctx, metaKey, m); err != nil {
		return fmt.Errorf("projections: %s marker: %w", name, err)
	}
	return nil
}

// ensureBuilt rebuilds p if its bucket has no current marker, or may have
// lost acknowledged writes (openBucket). In the second case most
// documents are right and Rebuild only reads them: it writes the ones a
// crash lost or left behind, and removes the ones whose removal it lost.
func ensureBuilt(ctx context.Context, c *bus.Conn, kv jetstream.KeyValue, mayHaveLost bool, p Projection, schema int, logger *slog.Logger) error {
	rebuild, err := needsRebuild(ctx, kv, p.Name(), schema)
	if err != nil {
		return fmt.Errorf("projections: %s marker: %w", p.Name(), err)
	}
	switch {
	case rebuild:
		logger.Info("rebuilding projection from the event log", "projection", p.Name())
	case mayHaveLost:
		logger.Info("the last stop was not clean: re-checking projection against the event log", "projection", p.Name())
	default:
		return nil
	}
	if err := p.Rebuild(ctx); err != nil {
		return err
	}
	// The bucket is whole again: this run may record a clean stop.
	c.Rechecked("KV_" + kv.Bucket())
	return nil
}
