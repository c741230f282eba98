package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// The read models' buckets on the embedded server acknowledge a document
// write before it is on disk. keysd (a process of its own) is killed with
// SIGKILL right after each round of writes is answered; then, as an OS
// crash would, the unsynced end of each bucket's file is lost (a SIGKILL
// alone leaves the OS's cache, which the server fills within about a
// millisecond of acknowledging). The log keeps every event. After each
// restart every list and every read shows everything written so far.
func TestKilledAfterWritesListsEverything(t *testing.T) {
	env, adminKey := processEnv(t, t.TempDir())
	env["KEYSD_LOG_LEVEL"] = "info"
	var tokens, shared, keys []string
	var manager string // a token that may create shared keys
	const rounds, perRound = 3, 5
	for round := range rounds {
		cmd, url := startProcess(t, env)
		k := &keysd{URL: url}
		admin := k.Client(t, "admin", adminKey)
		check(t, k, admin, manager, tokens, shared, keys)
		if manager == "" {
			var tok struct{ ID, Token string }
			admin.MustOK(t, http.StatusCreated, "POST", "/--admin/tokens", map[string]any{"name": "manager", "roles": []string{domain.RoleKeysManage, domain.RoleKeysRead}}).JSON(t, &tok)
			manager = tok.Token
			tokens = append(tokens, tok.ID)
		}
		lm := k.Bearer(manager)
		before := bucketFiles(t, env["KEYSD_DATA_DIR"])
		for i := range perRound {
			name := fmt.Sprintf("r%d-%d", round, i)
			var tok struct{ ID string }
			admin.MustOK(t, http.StatusCreated, "POST", "/--admin/tokens", map[string]any{"name": name, "roles": []string{domain.RoleKeysRead}}).JSON(t, &tok)
			tokens = append(tokens, tok.ID)
			lm.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": name, "privateKey": MustOpenSSHPEM(t, MustKey(t))})
			shared = append(shared, name)
			admin.MustOK(t, http.StatusCreated, "POST", "/admin/keys", map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), name)})
			keys = append(keys, name)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		loseUnsyncedTail(t, env["KEYSD_DATA_DIR"], before)
	}
	cmd, url := startProcess(t, env)
	k := &keysd{URL: url}
	check(t, k, k.Client(t, "admin", adminKey), manager, tokens, shared, keys)
	_ = cmd.Process.Signal(syscall.SIGTERM)
}

// check asserts that keysd lists and reads every token, shared key and
// account key written.
func check(tb testing.TB, k *keysd, admin *client, manager string, tokens, shared, keys []string) {
	tb.Helper()
	var listedTokens []struct{ ID string }
	admin.MustOK(tb, http.StatusOK, "GET", "/--admin/tokens", nil).JSON(tb, &listedTokens)
	want := map[string]bool{}
	for _, id := range tokens {
		want[id] = true
	}
	for _, tok := range listedTokens {
		delete(want, tok.ID)
	}
	if len(want) != 0 {
		tb.Errorf("tokens missing from the list: %v", want)
	}
	if manager == "" {
		return
	}
	lm := k.Bearer(manager)
	var listedShared []infraKeyJSON
	lm.MustOK(tb, http.StatusOK, "GET", lmPrefix+"/shared", nil).Decode(tb, &listedShared)
	want = map[string]bool{}
	for _, name := range shared {
		want[name] = true
		lm.MustOK(tb, http.StatusOK, "GET", keyPath(name), nil)
	}
	for _, s := range listedShared {
		delete(want, s.Name)
	}
	if len(want) != 0 {
		tb.Errorf("shared keys missing from the list: %v", want)
	}
	var listedKeys []struct{ Name string }
	admin.MustOK(tb, http.StatusOK, "GET", "/admin/keys", nil).JSON(tb, &listedKeys)
	want = map[string]bool{}
	for _, name := range keys {
		want[name] = true
		admin.MustOK(tb, http.StatusOK, "GET", "/admin/keys/"+name, nil)
	}
	for _, key := range listedKeys {
		delete(want, key.Name)
	}
	if len(want) != 0 {
		tb.Errorf("account keys missing from the list: %v", want)
	}
}

// readModelStreams are the streams of the read models' buckets.
var readModelStreams = []string{"KV_" + projections.AccountsBucket, "KV_" + projections.InfraKeysBucket, "KV_" + projections.TokensBucket}

// bucketFiles returns the size of the last message block of each read
// model's stream in keysd's data directory.
func bucketFiles(tb testing.TB, dataDir string) map[string]int64 {
	tb.Helper()
	sizes := map[string]int64{}
	for _, stream := range readModelStreams {
		blk := lastBlock(tb, dataDir, stream)
		fi, err := os.Stat(blk)
		if err != nil {
			tb.Fatal(err)
		}
		sizes[blk] = fi.Size()
	}
	return sizes
}

// lastBlock is the path of the last message block of stream.
func lastBlock(tb testing.TB, dataDir, stream string) string {
	tb.Helper()
	blks, err := filepath.Glob(filepath.Join(dataDir, "jetstream", "jetstream", "$G", "streams", stream, "msgs", "*.blk"))
	if err != nil || len(blks) == 0 {
		tb.Fatalf("no message block of %s: %v", stream, err)
	}
	slices.SortFunc(blks, func(a, b string) int { return len(a) - len(b) })
	return blks[len(blks)-1] // "10.blk" after "9.blk"; equal lengths sort by name
}

// loseUnsyncedTail cuts off the second half of what each read model's
// last block gained since before: what an OS crash does to writes that
// were never synced.
func loseUnsyncedTail(tb testing.TB, dataDir string, before map[string]int64) {
	tb.Helper()
	for _, stream := range readModelStreams {
		blk := lastBlock(tb, dataDir, stream)
		fi, err := os.Stat(blk)
		if err != nil {
			tb.Fatal(err)
		}
		from := before[blk] // 0 for a block begun since
		if fi.Size() <= from {
			continue
		}
		if err := os.Truncate(blk, from+(fi.Size()-from)/2); err != nil {
			tb.Fatal(err)
		}
	}
}
