package domain_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// memAccounts keeps accounts in memory, as a stand-in for the event log to
// count what a command loads and to let another writer come first; the
// repository on NATS is tested in projections and bus.
type memAccounts struct {
	tb       testing.TB
	accounts map[string]*domain.Account
	loads    int
	appends  int
	// beforeAppend, if set, runs before each append: another writer.
	beforeAppend func(m *memAccounts, attempt int)
}

func (m *memAccounts) LoadAccount(_ context.Context, login string) (*domain.Account, error) {
	m.loads++
	a := m.accounts[login]
	if a == nil {
		return nil, nil
	}
	return MustApply(m.tb, domain.ApplyAccountEvent, a, a.Version), nil
}

func (m *memAccounts) AppendAccount(_ context.Context, login string, expected uint64, evs []domain.Event) (*domain.Account, error) {
	if m.beforeAppend != nil {
		m.beforeAppend(m, m.appends)
	}
	m.appends++
	cur := m.accounts[login]
	var version uint64
	if cur != nil {
		version = cur.Version
	}
	if version != expected {
		return nil, domain.ErrVersionConflict
	}
	after := MustApply(m.tb, domain.ApplyAccountEvent, cur, version, evs...)
	m.accounts[login] = after
	return after, nil
}

// write records evs for login as another writer would.
func (m *memAccounts) write(login string, evs ...domain.Event) {
	cur := m.accounts[login]
	var version uint64
	if cur != nil {
		version = cur.Version
	}
	m.accounts[login] = MustApply(m.tb, domain.ApplyAccountEvent, cur, version, evs...)
}

func newMemAccounts(tb testing.TB, accounts ...*domain.Account) *memAccounts {
	m := &memAccounts{tb: tb, accounts: map[string]*domain.Account{}}
	for _, a := range accounts {
		m.accounts[a.Login] = a
	}
	return m
}

// A command starts from the state the request already read: no load, one
// append.
func TestExecuteStartsFromLoadedState(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		repo := newMemAccounts(t, MustAccount(t, "alice", MustPublicKey(t, "laptop")))
		svc := &domain.AccountService{Repo: repo}
		loaded, _ := repo.LoadAccount(ctx, "alice")
		repo.loads = 0
		k, err := svc.CreateKey(ctx, "alice", loaded, "desk", MustPublicKey(t, "desk"), nil, testMeta)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := k.Name, "desk"; got != want {
			t.Errorf("key = %q, want %q", got, want)
		}
		if got, want := repo.loads, 0; got != want {
			t.Errorf("loads = %d, want %d", got, want)
		}
		if got, want := repo.appends, 1; got != want {
			t.Errorf("appends = %d, want %d", got, want)
		}
	})
	t.Run("NotLoaded", func(t *testing.T) {
		repo := newMemAccounts(t, MustAccount(t, "alice", MustPublicKey(t, "laptop"), MustPublicKey(t, "desk")))
		svc := &domain.AccountService{Repo: repo}
		if err := svc.DeleteKey(ctx, "alice", nil, "desk", testMeta); err != nil {
			t.Fatal(err)
		}
		if got, want := repo.loads, 1; got != want {
			t.Errorf("loads = %d, want %d", got, want)
		}
	})
	t.Run("ConflictReloads", func(t *testing.T) {
		// Another writer adds "desk" after the request read the account:
		// the append conflicts, and the command is decided again against
		// the account as it is now, where the name is taken.
		repo := newMemAccounts(t, MustAccount(t, "alice", MustPublicKey(t, "laptop")))
		svc := &domain.AccountService{Repo: repo}
		loaded, _ := repo.LoadAccount(ctx, "alice")
		repo.loads = 0
		repo.beforeAppend = func(m *memAccounts, attempt int) {
			if attempt == 0 {
				ev, err := m.accounts["alice"].CreateKey("desk", MustPublicKey(t, "other"), nil, testMeta)
				if err != nil {
					t.Fatal(err)
				}
				m.write("alice", ev)
			}
		}
		_, err := svc.CreateKey(ctx, "alice", loaded, "desk", MustPublicKey(t, "desk"), nil, testMeta)
		CheckCode(t, err, domain.ECONFLICT)
		if got, want := repo.loads, 1; got != want {
			t.Errorf("loads = %d, want %d (once, after the conflict)", got, want)
		}
		if got, want := len(repo.accounts["alice"].Keys), 2; got != want {
			t.Errorf("keys = %d, want %d", got, want)
		}
	})
	t.Run("ErrOtherAccount", func(t *testing.T) {
		// An operator acts on bob: the signer's account is no start state
		// for a command on bob's.
		repo := newMemAccounts(t, MustAccount(t, "ops", MustPublicKey(t, "ops")), MustAccount(t, "bob", MustPublicKey(t, "b1"), MustPublicKey(t, "b2")))
		svc := &domain.AccountService{Repo: repo}
		signer, _ := repo.LoadAccount(ctx, "ops")
		err := svc.DeleteKey(ctx, "bob", signer, "b2", testMeta)
		CheckCode(t, err, domain.EINTERNAL)
		if got, want := repo.appends, 0; got != want {
			t.Errorf("appends = %d, want %d", got, want)
		}
	})
}

func TestExecute(t *testing.T) {
	ctx := context.Background()
	owner := domain.AccountOwner("alice")
	grant := func(a *domain.Account) ([]domain.Event, error) { return a.GrantOperator(testMeta), nil }
	t.Run("OK", func(t *testing.T) {
		repo := newMemAccounts(t, MustAccount(t, "alice"))
		a, err := domain.Execute(ctx, domain.Accounts(repo), owner, nil, grant)
		if err != nil {
			t.Fatal(err)
		}
		if !a.Operator {
			t.Error("the state returned is not the state after the events")
		}
	})
	t.Run("NothingToDo", func(t *testing.T) {
		op := MustAccount(t, "alice")
		op.Operator = true
		repo := newMemAccounts(t, op)
		a, err := domain.Execute(ctx, domain.Accounts(repo), owner, nil, grant)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := repo.appends, 0; got != want {
			t.Errorf("appends = %d, want %d", got, want)
		}
		if a == nil || !a.Operator {
			t.Errorf("state = %+v, want the state decided against", a)
		}
	})
	t.Run("ErrDecision", func(t *testing.T) {
		repo := newMemAccounts(t)
		_, err := domain.Execute(ctx, domain.Accounts(repo), owner, nil, func(a *domain.Account) ([]domain.Event, error) {
			return nil, domain.Errorf(domain.ENOTFOUND, "alice does not exist")
		})
		CheckCode(t, err, domain.ENOTFOUND)
		if got, want := repo.appends, 0; got != want {
			t.Errorf("appends = %d, want %d", got, want)
		}
	})
	t.Run("ErrUnavailableAfterConflicts", func(t *testing.T) {
		// Every append meets another writer first: the loop gives up.
		repo := newMemAccounts(t, MustAccount(t, "alice", MustPublicKey(t, "k0")))
		repo.beforeAppend = func(m *memAccounts, attempt int) {
			ev, err := m.accounts["alice"].CreateKey(fmt.Sprintf("other%d", attempt), MustPublicKey(t, "other"), nil, testMeta)
			if err != nil {
				t.Fatal(err)
			}
			m.write("alice", ev)
		}
		decisions := 0
		_, err := domain.Execute(ctx, domain.Accounts(repo), owner, nil, func(a *domain.Account) ([]domain.Event, error) {
			decisions++
			return a.SetPolicy(domain.Policy{RequireAttestedKeys: true}, testMeta)
		})
		CheckCode(t, err, domain.EUNAVAILABLE)
		if got, want := decisions, 20; got != want {
			t.Errorf("decisions = %d, want %d", got, want)
		}
		if got, want := repo.loads, 20; got != want {
			t.Errorf("loads = %d, want %d", got, want)
		}
	})
}
