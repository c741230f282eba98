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
	"github.com/infrakeys/infrakeys/domain"
)

// AccountsName is the stable name of the accounts projection. Renaming it
// replays the whole log into a new read model.
const AccountsName = "accounts"

// accountsSchema is the document layout version; changing it makes every
// node rebuild the bucket at start-up.
const accountsSchema = 1

// AccountsBucket holds one document per account: the account and its keys,
// with the log position it reflects.
const AccountsBucket = "KEYSD_ACCOUNTS"

// Accounts is the accounts read model, and the domain's repository for
// accounts: it loads an account from its document plus any events the
// document does not reflect yet, and after an append brings the document up
// to date before returning, so the writer's next read sees its write.
type Accounts struct {
	kv     jetstream.KeyValue
	log    *bus.EventLog
	logger *slog.Logger
}

var _ domain.AccountRepository = (*Accounts)(nil)

// OpenAccounts opens the bucket, rebuilding it from the log if it is new,
// wiped, or of an older layout.
func OpenAccounts(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*Accounts, error) {
	kv, err := openBucket(ctx, c, AccountsBucket, "infrakeys read model: accounts and their public keys")
	if err != nil {
		return nil, err
	}
	p := &Accounts{kv: kv, log: log, logger: logger}
	rebuild, err := needsRebuild(ctx, kv, AccountsName, accountsSchema)
	if err != nil {
		return nil, fmt.Errorf("projections: %s marker: %w", AccountsName, err)
	}
	if rebuild {
		logger.Info("rebuilding projection from the event log", "projection", AccountsName)
		if err := p.Rebuild(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Name implements Projection.
func (p *Accounts) Name() string { return AccountsName }

func accountKey(login string) string { return "account." + bus.Token(login) }

// Run keeps the read model up to date from the log until ctx ends. Writes
// through this repository update it themselves; Run catches everything
// else (writes by other replicas, a writer that died after appending).
func (p *Accounts) Run(ctx context.Context) error {
	return runConsumer(ctx, p.log, p.logger, AccountsName, bus.KindSubjects(domain.OwnerAccount), func(ctx context.Context, r bus.Recorded) error {
		doc, _, err := p.document(ctx, r.Event.Owner.ID)
		if err != nil {
			return err
		}
		if doc != nil && doc.Version >= r.Seq {
			return nil // already reflected: a duplicate or a write-through
		}
		_, err = p.refresh(ctx, r.Event.Owner.ID)
		return err
	})
}

// LoadAccount returns the account as of the last event in the log: its
// document plus the events after it. nil, nil when there is no account.
func (p *Accounts) LoadAccount(ctx context.Context, login string) (*domain.Account, error) {
	doc, _, err := p.document(ctx, login)
	if err != nil {
		return nil, err
	}
	return p.catchUp(ctx, login, doc)
}

// AppendAccount appends events for login if its version is still expected,
// then brings its document up to date.
func (p *Accounts) AppendAccount(ctx context.Context, login string, expected uint64, events []domain.Event) (*domain.Account, error) {
	if _, err := p.log.Append(ctx, domain.AccountOwner(login), expected, events); err != nil {
		return nil, err
	}
	return p.refresh(ctx, login)
}

// document reads the stored document of login and its KV revision; nil
// when there is none.
func (p *Accounts) document(ctx context.Context, login string) (*domain.Account, uint64, error) {
	e, err := p.kv.Get(ctx, accountKey(login))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, domain.Errorf(domain.EUNAVAILABLE, "accounts read model unavailable: %v", err)
	}
	var a domain.Account
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, 0, fmt.Errorf("projections: account document %s: %w", login, err)
	}
	return &a, e.Revision(), nil
}

// catchUp applies the events of login after doc's version.
func (p *Accounts) catchUp(ctx context.Context, login string, doc *domain.Account) (*domain.Account, error) {
	var after uint64
	if doc != nil {
		after = doc.Version
	}
	tail, err := p.log.ReadOwner(ctx, domain.AccountOwner(login), after)
	if err != nil {
		return nil, err
	}
	for _, r := range tail {
		if doc, err = domain.ApplyAccountEvent(doc, r.Event, r.Seq); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// refresh brings the document of login up to date with the log and returns
// it. Concurrent refreshes are safe: the document is replaced only if it
// has not changed since it was read (compare-and-set on the KV revision).
func (p *Accounts) refresh(ctx context.Context, login string) (*domain.Account, error) {
	for attempt := 0; attempt < 10; attempt++ {
		doc, rev, err := p.document(ctx, login)
		if err != nil {
			return nil, err
		}
		before := uint64(0)
		if doc != nil {
			before = doc.Version
		}
		after, err := p.catchUp(ctx, login, doc)
		if err != nil {
			return nil, err
		}
		if after == nil || after.Version == before {
			return after, nil
		}
		if err := p.store(ctx, login, after, rev); errors.Is(err, jetstream.ErrKeyExists) {
			continue // someone else moved it; read again
		} else if err != nil {
			return nil, err
		}
		return after, nil
	}
	return nil, domain.Errorf(domain.EUNAVAILABLE, "accounts read model busy; retry")
}

// store writes a document with compare-and-set on rev (0: must not exist).
func (p *Accounts) store(ctx context.Context, login string, a *domain.Account, rev uint64) error {
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = p.kv.Create(ctx, accountKey(login), data)
	} else {
		_, err = p.kv.Update(ctx, accountKey(login), data, rev)
	}
	return err
}

// Rebuild recomputes every account document from the whole log. It is
// safe while the service runs: each document is replaced by the log's
// state at the moment of writing, never by an older one, and documents of
// accounts the log does not know are removed.
func (p *Accounts) Rebuild(ctx context.Context) error {
	accounts := map[string]*domain.Account{}
	last, err := p.log.Replay(ctx, bus.ReplayOptions{Subjects: []string{bus.KindSubjects(domain.OwnerAccount)}}, func(r bus.Recorded) error {
		a, err := domain.ApplyAccountEvent(accounts[r.Event.Owner.ID], r.Event, r.Seq)
		if err != nil {
			return err
		}
		accounts[r.Event.Owner.ID] = a
		return nil
	})
	if err != nil {
		return fmt.Errorf("projections: rebuild %s: %w", AccountsName, err)
	}
	for login, a := range accounts {
		if a == nil {
			continue
		}
		if err := p.replace(ctx, login, a); err != nil {
			return fmt.Errorf("projections: rebuild %s: %w", AccountsName, err)
		}
	}
	if err := p.removeUnknown(ctx, accounts); err != nil {
		return err
	}
	m, _ := json.Marshal(meta{Projection: AccountsName, Schema: accountsSchema, RebuiltAt: time.Now().UTC(), LastSeq: last})
	if _, err := p.kv.Put(ctx, metaKey, m); err != nil {
		return fmt.Errorf("projections: rebuild %s: marker: %w", AccountsName, err)
	}
	return nil
}

// replace writes rebuilt (plus any later events) over whatever document
// login has.
func (p *Accounts) replace(ctx context.Context, login string, rebuilt *domain.Account) error {
	for attempt := 0; attempt < 10; attempt++ {
		// The current document is read for its revision only: a damaged
		// one is replaced all the same.
		var rev uint64
		e, err := p.kv.Get(ctx, accountKey(login))
		switch {
		case err == nil:
			rev = e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return err
		}
		clone := *rebuilt
		clone.Keys = append([]domain.AccountKey(nil), rebuilt.Keys...)
		a, err := p.catchUp(ctx, login, &clone)
		if err != nil {
			return err
		}
		if err := p.store(ctx, login, a, rev); errors.Is(err, jetstream.ErrKeyExists) {
			continue
		} else if err != nil {
			return err
		}
		return nil
	}
	return domain.Errorf(domain.EUNAVAILABLE, "accounts read model busy; retry")
}

// removeUnknown deletes documents of accounts that have no events.
func (p *Accounts) removeUnknown(ctx context.Context, known map[string]*domain.Account) error {
	lister, err := p.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("projections: list %s: %w", AccountsBucket, err)
	}
	want := map[string]bool{metaKey: true}
	for login := range known {
		want[accountKey(login)] = true
	}
	var stale []string
	for k := range lister.Keys() {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	for _, k := range stale {
		if err := p.kv.Purge(ctx, k); err != nil {
			return fmt.Errorf("projections: remove stale %s: %w", k, err)
		}
	}
	return nil
}
