package projections_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// keyNames lists an account's key names in order.
func keyNames(a *domain.Account) []string {
	names := make([]string, len(a.Keys))
	for i, k := range a.Keys {
		names[i] = k.Name
	}
	return names
}

// TestAccounts_ReadYourWrites checks that each write through the service
// is visible to the next read, and already in the stored document.
func TestAccounts_ReadYourWrites(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	const login = "alice@example.com"

	check := func(t *testing.T, want []string) {
		t.Helper()
		a := MustLoadAccount(t, e, login)
		if got := keyNames(a); !slices.Equal(got, want) {
			t.Errorf("keys = %v, want %v", got, want)
		}
		rs, err := e.log.ReadOwner(ctx, domain.AccountOwner(login), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := a.Version, rs[len(rs)-1].Seq; got != want {
			t.Errorf("version = %d, want %d (the account's last event)", got, want)
		}
		doc := MustDocument(t, e, login)
		if doc == nil {
			t.Fatal("no document")
		}
		if got, want := doc.Version, a.Version; got != want {
			t.Errorf("document version = %d, want %d", got, want)
		}
	}

	t.Run("NotFound", func(t *testing.T) {
		a, err := e.accounts.LoadAccount(ctx, login)
		if err != nil || a != nil {
			t.Errorf("LoadAccount = %v, %v; want nil, nil", a, err)
		}
	})
	t.Run("CreateAccount", func(t *testing.T) {
		a := MustCreateAccount(t, e, login, "laptop")
		if got, want := keyNames(a), []string{"laptop"}; !slices.Equal(got, want) {
			t.Errorf("returned keys = %v, want %v", got, want)
		}
		check(t, []string{"laptop"})
	})
	t.Run("CreateKey", func(t *testing.T) {
		MustCreateKey(t, e, login, "desktop")
		check(t, []string{"laptop", "desktop"})
		MustCreateKey(t, e, login, "yubikey")
		check(t, []string{"laptop", "desktop", "yubikey"})
	})
	t.Run("DeleteKey", func(t *testing.T) {
		if err := e.service.DeleteKey(ctx, login, nil, "desktop", meta()); err != nil {
			t.Fatal(err)
		}
		check(t, []string{"laptop", "yubikey"})
	})
	t.Run("ErrDuplicateName", func(t *testing.T) {
		_, err := e.service.CreateKey(ctx, login, nil, "laptop", MustPublicKey(t, "laptop"), nil, meta())
		if got, want := domain.ErrorCode(err), domain.ECONFLICT; got != want {
			t.Errorf("error code = %q, want %q (err %v)", got, want, err)
		}
		check(t, []string{"laptop", "yubikey"})
	})
}

// TestAccounts_Idempotent delivers every event again, through the durable
// consumer and through a second rebuild: nothing changes.
func TestAccounts_Idempotent(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	MustCreateAccount(t, e, "alice", "a1")
	MustCreateKey(t, e, "alice", "a2")
	MustCreateAccount(t, e, "bob", "b1")
	MustCreateKey(t, e, "bob", "b2")
	if err := e.service.DeleteKey(ctx, "bob", nil, "b1", meta()); err != nil {
		t.Fatal(err)
	}
	last, err := e.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := MustSnapshot(t, e)

	t.Run("Run", func(t *testing.T) {
		// The writers updated every document already; the consumer now
		// sees each event a second time.
		MustRun(t, e.accounts)
		eventually(t, "the consumer acknowledges every event", func() bool {
			c, err := e.log.Stream().Consumer(ctx, "projection-accounts")
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			return err == nil && info.AckFloor.Stream >= last && info.NumAckPending == 0
		})
		after := MustSnapshot(t, e)
		sameValues(t, after, before)
		for k, b := range before {
			if got, want := after[k].revision, b.revision; got != want {
				t.Errorf("%s rewritten: revision %d, want %d", k, got, want)
			}
		}
	})

	t.Run("Rebuild", func(t *testing.T) {
		for range 2 {
			if err := e.accounts.Rebuild(ctx); err != nil {
				t.Fatal(err)
			}
			sameValues(t, MustSnapshot(t, e), before)
		}
	})
}

// TestAccounts_Rebuild checks that the read model is a pure function of
// the log: however it is damaged, rebuilding it gives the same bytes.
func TestAccounts_Rebuild(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	MustCreateAccount(t, e, "alice", "a1")
	MustCreateKey(t, e, "alice", "a2")
	MustCreateKey(t, e, "alice", "a3")
	if err := e.service.DeleteKey(ctx, "alice", nil, "a2", meta()); err != nil {
		t.Fatal(err)
	}
	MustCreateAccount(t, e, "bob.smith@example.com", "b1")
	if _, err := e.service.SetPolicy(ctx, "bob.smith@example.com", domain.Policy{RequireAttestedSigning: true}, meta()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.service.EnsureOperator(ctx, "carol", MustPublicKey(t, "carol@ops"), meta()); err != nil {
		t.Fatal(err)
	}
	MustCreateAccount(t, e, "dave", "d1")
	MustCreateKey(t, e, "dave", "d2")
	want := MustSnapshot(t, e)
	if got, want := len(want), 4; got != want {
		t.Fatalf("documents: got %d, want %d", got, want)
	}

	t.Run("Rebuild", func(t *testing.T) {
		if err := e.accounts.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		sameValues(t, MustSnapshot(t, e), want)
	})

	t.Run("DeletedBucket", func(t *testing.T) {
		if err := e.conn.JS.DeleteKeyValue(ctx, projections.AccountsBucket); err != nil {
			t.Fatal(err)
		}
		// Opening finds no marker and rebuilds before returning.
		e.accounts = MustOpenAccounts(t, e)
		e.service.Repo = e.accounts
		sameValues(t, MustSnapshot(t, e), want)
		if _, err := MustBucket(t, e).Get(ctx, "meta"); err != nil {
			t.Errorf("marker: %v", err)
		}
	})

	t.Run("PurgedAndCorrupted", func(t *testing.T) {
		kv := MustBucket(t, e)
		if err := kv.Purge(ctx, "account."+bus.Token("alice")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "account."+bus.Token("bob.smith@example.com"), []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "account."+bus.Token("dave"), []byte(`{"login":"dave","keys":[],"version":1}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(ctx, "account."+bus.Token("ghost"), []byte(`{"login":"ghost","keys":[],"version":1}`)); err != nil {
			t.Fatal(err)
		}
		if err := e.accounts.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		sameValues(t, MustSnapshot(t, e), want)
	})

	t.Run("LoadAfterRebuild", func(t *testing.T) {
		// The service works on as before on the rebuilt model.
		MustCreateKey(t, e, "alice", "a4")
		if got, want := keyNames(MustLoadAccount(t, e, "alice")), []string{"a1", "a3", "a4"}; !slices.Equal(got, want) {
			t.Errorf("keys = %v, want %v", got, want)
		}
	})
}

func TestAccounts_EnsureOperator(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	key := MustPublicKey(t, "root@ops")

	a, err := e.service.EnsureOperator(ctx, "root", key, meta())
	if err != nil {
		t.Fatal(err)
	}
	if !a.Operator || a.KeyByFingerprint(key.Fingerprint) == nil {
		t.Fatalf("EnsureOperator = %+v, want an operator with the key", a)
	}
	first, err := e.log.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("Again", func(t *testing.T) {
		again, err := e.service.EnsureOperator(ctx, "root", key, meta())
		if err != nil {
			t.Fatal(err)
		}
		if got, err := e.log.LastSeq(ctx); err != nil || got != first {
			t.Errorf("LastSeq = %d, %v; want %d: nothing to append", got, err, first)
		}
		if got, want := again.Version, a.Version; got != want {
			t.Errorf("version = %d, want %d", got, want)
		}
	})

	t.Run("ExistingAccount", func(t *testing.T) {
		// An ordinary account becomes an operator, keeping its keys.
		MustCreateAccount(t, e, "bob", "b1")
		b, err := e.service.EnsureOperator(ctx, "bob", key, meta())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(b.Keys), 2; !b.Operator || got != want {
			t.Errorf("operator %v with %d keys, want an operator with %d", b.Operator, got, want)
		}
		last, err := e.log.LastSeq(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.service.EnsureOperator(ctx, "bob", key, meta()); err != nil {
			t.Fatal(err)
		}
		if got, err := e.log.LastSeq(ctx); err != nil || got != last {
			t.Errorf("LastSeq = %d, %v; want %d: nothing to append", got, err, last)
		}
	})
}

// TestAccounts_CrashedWriter appends an event the way a writer that died
// before updating the document leaves it: in the log, not in the document.
func TestAccounts_CrashedWriter(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	a := MustCreateAccount(t, e, "alice", "laptop")
	ev, err := a.CreateKey("desktop", MustPublicKey(t, "desktop"), nil, meta())
	if err != nil {
		t.Fatal(err)
	}
	seq, err := e.log.Append(ctx, domain.AccountOwner("alice"), a.Version, []domain.Event{ev})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := MustDocument(t, e, "alice").Version, a.Version; got != want {
		t.Fatalf("document version = %d, want %d: the document must lag for this test", got, want)
	}

	t.Run("LoadReadsTail", func(t *testing.T) {
		got := MustLoadAccount(t, e, "alice")
		if got, want := got.Version, seq; got != want {
			t.Errorf("version = %d, want %d", got, want)
		}
		if got, want := keyNames(got), []string{"laptop", "desktop"}; !slices.Equal(got, want) {
			t.Errorf("keys = %v, want %v", got, want)
		}
	})

	t.Run("RunCatchesUp", func(t *testing.T) {
		MustRun(t, e.accounts)
		eventually(t, "the document reaches the appended event", func() bool {
			doc := MustDocument(t, e, "alice")
			return doc != nil && doc.Version >= seq
		})
		doc := MustDocument(t, e, "alice")
		if got, want := doc.Version, seq; got != want {
			t.Errorf("document version = %d, want %d", got, want)
		}
		if got, want := keyNames(doc), []string{"laptop", "desktop"}; !slices.Equal(got, want) {
			t.Errorf("document keys = %v, want %v", got, want)
		}
	})
}

// TestAccounts_ConcurrentCreateKey races writers to give one account a key
// of the same name: the optimistic lock lets exactly one win.
func TestAccounts_ConcurrentCreateKey(t *testing.T) {
	const writers = 50
	ctx := context.Background()
	e := MustEnv(t)
	MustCreateAccount(t, e, "alice", "first")

	keys := make([]*domain.PublicKey, writers)
	for i := range keys {
		keys[i] = MustPublicKey(t, "laptop")
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = e.service.CreateKey(ctx, "alice", nil, "laptop", keys[i], nil, meta())
		})
	}
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both created the key", winner, i)
		case err == nil:
			winner = i
		case domain.ErrorCode(err) != domain.ECONFLICT:
			t.Errorf("writer %d: err = %v, want code %q", i, err, domain.ECONFLICT)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created the key")
	}
	a := MustLoadAccount(t, e, "alice")
	if got, want := keyNames(a), []string{"first", "laptop"}; !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	if k := a.FindKey("laptop"); k == nil || k.Fingerprint != keys[winner].Fingerprint {
		t.Errorf("laptop is not the winner's key")
	}
	rs, err := e.log.ReadOwner(ctx, domain.AccountOwner("alice"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rs), 3; got != want {
		t.Errorf("events: got %d, want %d (created, first key, laptop)", got, want)
	}
	if got, want := MustDocument(t, e, "alice").Version, a.Version; got != want {
		t.Errorf("document version = %d, want %d", got, want)
	}
}
