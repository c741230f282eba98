package projections_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// On the embedded server the read models' buckets flush their writes
// asynchronously; a bucket made by an older keysd, which fsyncs every
// write, is replaced by one that does not and rebuilt from the log, even
// after a clean stop.
func TestEmbeddedBucketsAsync(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if c.StoppedCleanly() {
		t.Error("a new store reports a clean stop")
	}
	e := &env{conn: c}
	if e.log, err = bus.OpenEventLog(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.accounts = MustOpenAccounts(t, e)
	logger := slog.New(slog.DiscardHandler)
	if _, err := projections.OpenInfraKeys(ctx, c, e.log, logger); err != nil {
		t.Fatal(err)
	}
	if _, err := projections.OpenTokens(ctx, c, e.log, logger); err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{projections.AccountsBucket, projections.InfraKeysBucket, projections.TokensBucket} {
		if got, want := persistMode(t, c, bucket), jetstream.AsyncPersistMode; got != want {
			t.Errorf("%s: persist mode %v, want %v", bucket, got, want)
		}
	}
	e.service = &domain.AccountService{Repo: e.accounts}
	MustCreateAccount(t, e, "alice", "a1")
	MustCatchUp(t, e)
	want := MustSnapshot(t, e)

	// What an older keysd left: the same entries, marker included, in a
	// bucket that fsyncs every write.
	kv := MustBucket(t, e)
	marker, err := kv.Get(ctx, "meta")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.JS.DeleteKeyValue(ctx, projections.AccountsBucket); err != nil {
		t.Fatal(err)
	}
	old, err := c.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: projections.AccountsBucket, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if _, err := old.Put(ctx, k, []byte(v.value)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Put(ctx, "meta", marker.Value()); err != nil {
		t.Fatal(err)
	}
	c.Close()

	if c, err = bus.Connect(ctx, bus.Config{StoreDir: dir}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if !c.StoppedCleanly() {
		t.Error("after Close the store does not report a clean stop")
	}
	e = &env{conn: c}
	if e.log, err = bus.OpenEventLog(ctx, c); err != nil {
		t.Fatal(err)
	}
	e.accounts = MustOpenAccounts(t, e)
	if got, want := persistMode(t, c, projections.AccountsBucket), jetstream.AsyncPersistMode; got != want {
		t.Errorf("replaced bucket: persist mode %v, want %v", got, want)
	}
	got := MustSnapshot(t, e)
	if len(got) != len(want) {
		t.Fatalf("rebuilt bucket: %d documents, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k].value != v.value {
			t.Errorf("rebuilt %s: %s, want %s", k, got[k].value, v.value)
		}
	}
	if _, err := MustBucket(t, e).Get(ctx, "meta"); err != nil {
		t.Errorf("marker: %v", err)
	}
}

// persistMode returns the persist mode of bucket's stream.
func persistMode(tb testing.TB, c *bus.Conn, bucket string) jetstream.PersistModeType {
	tb.Helper()
	s, err := c.JS.Stream(context.Background(), "KV_"+bucket)
	if err != nil {
		tb.Fatal(err)
	}
	return s.CachedInfo().Config.PersistMode
}
