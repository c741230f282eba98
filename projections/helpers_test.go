package projections_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// env is an embedded server with the event log and the accounts read
// model on it.
type env struct {
	conn     *bus.Conn
	log      *bus.EventLog
	accounts *projections.Accounts
	service  *domain.AccountService
}

// MustEnv starts an embedded server in a fresh directory and opens the
// event log and the accounts projection on it.
func MustEnv(tb testing.TB) *env {
	tb.Helper()
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{conn: c, log: l}
	e.accounts = MustOpenAccounts(tb, e)
	e.service = &domain.AccountService{Repo: e.accounts}
	return e
}

// MustOpenAccounts opens the accounts projection on e's connection.
func MustOpenAccounts(tb testing.TB, e *env) *projections.Accounts {
	tb.Helper()
	p, err := projections.OpenAccounts(context.Background(), e.conn, e.log, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// MustRun runs the projection's durable consumer until the test ends.
func MustRun(tb testing.TB, p *projections.Accounts) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
}

// MustPublicKey returns a fresh ed25519 public key with comment.
func MustPublicKey(tb testing.TB, comment string) *domain.PublicKey {
	tb.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment
	k, err := domain.ParsePublicKey(line)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustCreateAccount creates login with one key named keyName.
func MustCreateAccount(tb testing.TB, e *env, login, keyName string) *domain.Account {
	tb.Helper()
	a, err := e.service.CreateAccount(context.Background(), login, false, keyName, MustPublicKey(tb, keyName), meta())
	if err != nil {
		tb.Fatalf("create account %s: %v", login, err)
	}
	return a
}

// MustCreateKey adds a fresh key named name to login.
func MustCreateKey(tb testing.TB, e *env, login, name string) *domain.AccountKey {
	tb.Helper()
	k, err := e.service.CreateKey(context.Background(), login, nil, name, MustPublicKey(tb, name), nil, meta())
	if err != nil {
		tb.Fatalf("create key %s/%s: %v", login, name, err)
	}
	return k
}

// MustLoadAccount loads login, which must exist.
func MustLoadAccount(tb testing.TB, e *env, login string) *domain.Account {
	tb.Helper()
	a, err := e.accounts.LoadAccount(context.Background(), login)
	if err != nil {
		tb.Fatal(err)
	}
	if a == nil {
		tb.Fatalf("account %s does not exist", login)
	}
	return a
}

func meta() domain.Meta { return domain.Meta{Actor: "test", RequestID: "req-test"} }

// MustBucket returns the accounts bucket, as any NATS client sees it.
func MustBucket(tb testing.TB, e *env) jetstream.KeyValue {
	tb.Helper()
	kv, err := e.conn.JS.KeyValue(context.Background(), projections.AccountsBucket)
	if err != nil {
		tb.Fatal(err)
	}
	return kv
}

// entry is one KV entry's value and revision.
type entry struct {
	value    string
	revision uint64
}

// MustSnapshot returns every entry of the accounts bucket but the
// projection's marker, which records when it was built.
func MustSnapshot(tb testing.TB, e *env) map[string]entry {
	tb.Helper()
	ctx := context.Background()
	kv := MustBucket(tb, e)
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := map[string]entry{}
	for _, k := range keys {
		if k == "meta" {
			continue
		}
		v, err := kv.Get(ctx, k)
		if err != nil {
			tb.Fatalf("get %s: %v", k, err)
		}
		out[k] = entry{string(v.Value()), v.Revision()}
	}
	return out
}

// sameValues reports every difference between the values of two
// snapshots.
func sameValues(tb testing.TB, got, want map[string]entry) {
	tb.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			tb.Errorf("%s: missing, want %s", k, w.value)
		case g.value != w.value:
			tb.Errorf("%s:\n got %s\nwant %s", k, g.value, w.value)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			tb.Errorf("%s: unexpected document %s", k, g.value)
		}
	}
}

// MustDocument returns the stored document of login; nil when there is
// none.
func MustDocument(tb testing.TB, e *env, login string) *domain.Account {
	tb.Helper()
	v, err := MustBucket(tb, e).Get(context.Background(), "account."+bus.Token(login))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	a := new(domain.Account)
	if err := json.Unmarshal(v.Value(), a); err != nil {
		tb.Fatal(err)
	}
	return a
}

// eventually polls cond until it holds, failing the test at a deadline far
// beyond what it should take, so a hang is a failure rather than a hung run.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
