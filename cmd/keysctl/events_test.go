package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// eventLine is one line of "keysctl events": the stream sequence and the
// envelope.
type eventLine struct {
	Seq   uint64 `json:"seq"`
	ID    string `json:"id"`
	Type  string `json:"type"`
	Owner struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
	} `json:"owner"`
	Data struct {
		Name              string `json:"name"`
		FingerprintSHA256 string `json:"fingerprintSHA256"`
	} `json:"data"`
	raw string
}

func (l eventLine) String() string {
	return fmt.Sprintf("%d %s %s/%s %s", l.Seq, l.Type, l.Owner.Kind, l.Owner.ID, l.Data.Name)
}

// parseEvents reads the JSON lines of "keysctl events".
func parseEvents(tb testing.TB, out string) []eventLine {
	tb.Helper()
	var lines []eventLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l eventLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Seq == 0 || l.ID == "" {
			tb.Fatalf("not an event line: %q (%v)", sc.Text(), err)
		}
		l.raw = sc.Text()
		lines = append(lines, l)
	}
	return lines
}

// MustEvents runs "keysctl events args..." and returns its events.
func MustEvents(tb testing.TB, env map[string]string, args ...string) []eventLine {
	tb.Helper()
	out, err := keysctl(tb, env, append([]string{"events"}, args...)...)
	if err != nil {
		tb.Fatalf("keysctl events %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return parseEvents(tb, out)
}

// sameEvents fails unless got and want are the same events in order.
func sameEvents(tb testing.TB, got, want []eventLine) {
	tb.Helper()
	if len(got) != len(want) {
		tb.Fatalf("got %d events, want %d\ngot:  %v\nwant: %v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i].raw != want[i].raw {
			tb.Errorf("event %d:\ngot  %s\nwant %s", i, got[i].raw, want[i].raw)
		}
	}
}

// filter returns the events keep selects.
func filter(all []eventLine, keep func(eventLine) bool) []eventLine {
	var out []eventLine
	for _, l := range all {
		if keep(l) {
			out = append(out, l)
		}
	}
	return out
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer is written by a running command and read by the test.
type lockedBuffer = testkit.LockedBuffer

// TestEvents replays a real keysd's log over NATS as the audit role.
func TestEvents(t *testing.T) {
	dir := t.TempDir()
	adminPriv, adminPub := MustKeyFiles(t, dir, "admin")
	dataDir := filepath.Join(dir, "data")
	natsAddr := freeAddr(t)
	d := MustRunKeysd(t, []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_BOOTSTRAP_ACCOUNT=admin", "KEYSD_BOOTSTRAP_KEY=" + adminPub, "KEYSD_NATS_LISTEN=" + natsAddr})
	ctl := map[string]string{"KEYSCTL_URL": d.url, "KEYSCTL_ACCOUNT": "admin", "KEYSCTL_KEY_FILE": adminPriv}
	seeds := filepath.Join(dataDir, "nats")
	audit := map[string]string{"KEYSCTL_NATS_URL": "nats://" + natsAddr, "KEYSCTL_NATS_NKEY": bus.SeedFile(seeds, bus.RoleAudit)}
	c, err := newClient(d.url, "admin", adminPriv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return out
	}
	call := func(method, path string, body any) {
		t.Helper()
		if err := c.call(ctx, method, path, body, nil); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	const lm = "/api/resource-manager/infrastructure-keys"

	// Before: accounts, keys, a policy, a token named like a key, a shared key.
	_, bobPub := MustKeyFiles(t, dir, "bob-laptop")
	_, deskPub := MustKeyFiles(t, dir, "bob-desk")
	must(keysctl(t, ctl, "account", "create", "bob", "--key", bobPub))
	must(keysctl(t, ctl, "key", "add", "bob", deskPub, "--name", "desk"))
	call("DELETE", "/bob/keys/desk", nil)
	must(keysctl(t, ctl, "account", "policy", "bob", "--require-attested-keys"))
	must(keysctl(t, ctl, "account", "policy", "bob"))
	// The token alone, ikt_<id>_<secret>; revoke takes the id.
	parts := strings.SplitN(strings.TrimSpace(must(keysctl(t, ctl, "token", "create", "web", "--roles", "keys:read"))), "_", 3)
	if len(parts) != 3 {
		t.Fatalf("token create printed %q", strings.Join(parts, "_"))
	}
	tok := parts[1]
	must(keysctl(t, ctl, "token", "revoke", tok))
	call("POST", lm+"/shared", map[string]any{"name": "web", "description": "front", "generate": "ed25519"})

	var stats struct {
		Stream   string `json:"stream"`
		Events   uint64 `json:"events"`
		Bytes    uint64 `json:"bytes"`
		FirstSeq uint64 `json:"firstSeq"`
		LastSeq  uint64 `json:"lastSeq"`
		Owners   uint64 `json:"owners"`
		MaxAge   string `json:"maxAge"`
		MaxBytes int64  `json:"maxBytes"`
	}
	if err := json.Unmarshal([]byte(must(keysctl(t, audit, "events", "stats"))), &stats); err != nil {
		t.Fatal(err)
	}
	before := stats.LastSeq
	since := time.Now()

	// After: more keys, the shared key updated and deleted.
	_, phonePub := MustKeyFiles(t, dir, "bob-phone")
	must(keysctl(t, ctl, "account", "policy", "bob", "--require-attested-signing"))
	must(keysctl(t, ctl, "key", "add", "bob", phonePub, "--name", "phone"))
	call("PUT", lm+"/shared/web", map[string]any{"description": "front end"})
	call("DELETE", lm+"/shared/web", nil)

	all := MustEvents(t, audit)
	t.Run("FromTheStart", func(t *testing.T) {
		var types []string
		for i, l := range all {
			if l.Seq != uint64(i+1) {
				t.Fatalf("event %d has seq %d: %v", i, l.Seq, all)
			}
			types = append(types, l.Type)
		}
		want := "AccountCreated KeyCreated " + // bootstrap
			"AccountCreated KeyCreated KeyCreated KeyDeleted AccountPolicySet AccountPolicySet TokenCreated TokenRevoked KeyCreated " +
			"AccountPolicySet KeyCreated KeyUpdated KeyDeleted"
		if got := strings.Join(types, " "); got != want {
			t.Errorf("types\ngot  %s\nwant %s", got, want)
		}
	})
	t.Run("Stats", func(t *testing.T) {
		if err := json.Unmarshal([]byte(must(keysctl(t, audit, "events", "stats"))), &stats); err != nil {
			t.Fatal(err)
		}
		last := all[len(all)-1]
		if stats.Stream != bus.StreamName || stats.Events != uint64(len(all)) || stats.FirstSeq != 1 || stats.LastSeq != last.Seq {
			t.Errorf("stats %+v, replay has %d events up to %d", stats, len(all), last.Seq)
		}
		if stats.Owners != 4 || stats.Bytes == 0 || stats.MaxAge != "0s" || stats.MaxBytes != -1 {
			t.Errorf("stats %+v: want 4 owners (admin, bob, token, web), some bytes, no age or size limit", stats)
		}
	})
	t.Run("FromSeq", func(t *testing.T) {
		sameEvents(t, MustEvents(t, audit, "--from-seq", "5"), all[4:])
		sameEvents(t, MustEvents(t, audit, "--from-seq", "1"), all)
		sameEvents(t, MustEvents(t, audit, "--from-seq", fmt.Sprint(len(all)+1)), nil)
	})
	t.Run("Since", func(t *testing.T) {
		sameEvents(t, MustEvents(t, audit, "--since", since.Format(time.RFC3339Nano)), all[before:])
		sameEvents(t, MustEvents(t, audit, "--since", "1h"), all)
		sameEvents(t, MustEvents(t, audit, "--since", time.Now().Add(time.Hour).Format(time.RFC3339)), nil)
	})
	t.Run("Type", func(t *testing.T) {
		sameEvents(t, MustEvents(t, audit, "--type", "KeyDeleted,KeyUpdated"), filter(all, func(l eventLine) bool {
			return l.Type == "KeyDeleted" || l.Type == "KeyUpdated"
		}))
		sameEvents(t, MustEvents(t, audit, "--type", "AccountPolicySet", "--since", since.Format(time.RFC3339Nano)), all[before:before+1])
	})
	t.Run("Owner", func(t *testing.T) {
		for _, owner := range []string{"account/bob", "shared/web", "token/" + tok} {
			kind, id, _ := strings.Cut(owner, "/")
			want := filter(all, func(l eventLine) bool { return l.Owner.Kind == kind && l.Owner.ID == id })
			if len(want) == 0 {
				t.Fatalf("no events of %s", owner)
			}
			sameEvents(t, MustEvents(t, audit, "--owner", owner), want)
		}
		sameEvents(t, MustEvents(t, audit, "--owner", "account/nobody"), nil)
	})
	t.Run("Key", func(t *testing.T) {
		var desk string
		for _, l := range all {
			if l.Type == "KeyCreated" && l.Data.Name == "desk" {
				desk = l.Data.FingerprintSHA256
			}
		}
		// The KeyDeleted of desk has no SHA-256 fingerprint: it is found
		// because it follows the key's KeyCreated.
		deskEvents := filter(all, func(l eventLine) bool { return l.Data.Name == "desk" })
		if len(deskEvents) != 2 {
			t.Fatalf("desk events: %v", deskEvents)
		}
		sameEvents(t, MustEvents(t, audit, "--key", desk), deskEvents)
		sameEvents(t, MustEvents(t, audit, "--key", "desk"), deskEvents)
		// A token named web is no key.
		sameEvents(t, MustEvents(t, audit, "--key", "web"), filter(all, func(l eventLine) bool { return l.Owner.Kind == "shared" }))
	})
	t.Run("Progress", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"events", "--progress"}, func(n string) string { return audit[n] }, &out, &errOut); err != nil {
			t.Fatalf("%v: %s", err, errOut.String())
		}
		sameEvents(t, parseEvents(t, out.String()), all)
		if want := fmt.Sprintf("replayed %d of %d events (100%%)", len(all), len(all)); !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr %q lacks %q", errOut.String(), want)
		}
		out.Reset()
		errOut.Reset()
		if err := run(ctx, []string{"events"}, func(n string) string { return audit[n] }, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if errOut.Len() > 0 {
			t.Errorf("progress without --progress and no terminal: %q", errOut.String())
		}
	})
	t.Run("Follow", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var out, errOut lockedBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(fctx, []string{"events", "--follow", "--type", "KeyCreated"}, func(n string) string { return audit[n] }, &out, &errOut)
		}()
		waitFor := func(what string, ok func([]eventLine) bool) []eventLine {
			t.Helper()
			deadline := time.Now().Add(15 * time.Second)
			for {
				s := out.String()
				// Only whole lines: the command may be writing one.
				lines := parseEvents(t, s[:strings.LastIndexByte(s, '\n')+1])
				if ok(lines) {
					return lines
				}
				select {
				case err := <-done:
					t.Fatalf("keysctl events --follow ended: %v\n%s", err, errOut.String())
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("waiting for %s: got %v", what, lines)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		created := filter(all, func(l eventLine) bool { return l.Type == "KeyCreated" })
		waitFor("the replay", func(ls []eventLine) bool { return len(ls) >= len(created) })
		_, latePub := MustKeyFiles(t, dir, "bob-late")
		must(keysctl(t, ctl, "key", "add", "bob", latePub, "--name", "late"))
		lines := waitFor("the new key", func(ls []eventLine) bool { return len(ls) > len(created) })
		sameEvents(t, lines[:len(created)], created)
		if l := lines[len(created)]; l.Type != "KeyCreated" || l.Data.Name != "late" || l.Seq != all[len(all)-1].Seq+1 {
			t.Errorf("followed %v, want the KeyCreated of late", l)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("interrupted --follow: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("--follow did not end when interrupted")
		}
		all = MustEvents(t, audit)
	})
	t.Run("ErrNoNKey", func(t *testing.T) {
		out, err := keysctl(t, map[string]string{"KEYSCTL_NATS_URL": audit["KEYSCTL_NATS_URL"]}, "events")
		if err == nil || !strings.Contains(err.Error(), "Authorization Violation") || !strings.Contains(err.Error(), "--nkey") {
			t.Errorf("got %v %s", err, out)
		}
	})
	t.Run("ErrWrongNKey", func(t *testing.T) {
		for _, role := range []string{bus.RoleDriver, bus.RoleManager} {
			start := time.Now()
			out, err := keysctl(t, audit, "events", "--nkey", bus.SeedFile(seeds, role))
			if err == nil || !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), "audit role") {
				t.Errorf("%s seed: got %v %s", role, err, out)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s seed: refused after %v, not at once", role, took)
			}
		}
		if out, err := keysctl(t, audit, "events", "--nkey", filepath.Join(dir, "missing.nk")); err == nil || !strings.Contains(err.Error(), "missing.nk") {
			t.Errorf("missing seed file: %v %s", err, out)
		}
		if out, err := keysctl(t, audit, "events", "--nkey", adminPub); err == nil || !strings.Contains(err.Error(), "nkey") {
			t.Errorf("not a seed: %v %s", err, out)
		}
	})
	t.Run("ErrFlags", func(t *testing.T) {
		for _, args := range [][]string{
			{"--from-seq", "2", "--since", "1h"},
			{"--since", "yesterday"},
			{"--owner", "bob"},
			{"extra"},
		} {
			if out, err := keysctl(t, audit, append([]string{"events"}, args...)...); err == nil {
				t.Errorf("events %v: no error: %s", args, out)
			}
		}
	})

	// What keysctl printed is what is stored, byte for byte of the
	// envelope: read the stopped service's stream directly.
	d.Stop(t)
	t.Run("EqualsTheStream", func(t *testing.T) {
		conn, err := bus.Connect(ctx, bus.Config{StoreDir: filepath.Join(dataDir, "jetstream")})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s, err := conn.JS.Stream(ctx, bus.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := info.State.Msgs, uint64(len(all)); got != want {
			t.Fatalf("stream has %d events, keysctl printed %d", got, want)
		}
		for _, l := range all {
			m, err := s.GetMsg(ctx, l.Seq)
			if err != nil {
				t.Fatal(err)
			}
			var stored, printed map[string]any
			if err := json.Unmarshal(m.Data, &stored); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(l.raw), &printed); err != nil {
				t.Fatal(err)
			}
			delete(printed, "seq")
			if !reflect.DeepEqual(stored, printed) {
				t.Errorf("seq %d:\nstored  %s\nprinted %s", l.Seq, m.Data, l.raw)
			}
			if m.Header.Get(bus.HeaderEventType) != l.Type || m.Header.Get(jetstream.MsgIDHeader) != l.ID {
				t.Errorf("seq %d: headers %v", l.Seq, m.Header)
			}
		}
	})
}

// TestEventsIntake: the outcome events of driver intake, KeyRejected and
// IntakeDuplicate, are events of their intake owner like any other; an
// IntakeDuplicate names its key by keyId, and "--key <key id>" finds it.
func TestEventsIntake(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	natsAddr := freeAddr(t)
	MustRunKeysd(t, []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_NATS_LISTEN=" + natsAddr})
	seeds := filepath.Join(dataDir, "nats")
	audit := map[string]string{"KEYSCTL_NATS_URL": "nats://" + natsAddr, "KEYSCTL_NATS_NKEY": bus.SeedFile(seeds, bus.RoleAudit)}

	nc, err := bus.ConnectRole("nats://"+natsAddr, bus.RoleDriver, bus.SeedFile(seeds, bus.RoleDriver))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	outcomes, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	_, pub := MustKeyFiles(t, dir, "root")
	line, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"keyName": "root", "publicKey": strings.TrimSpace(string(line))})
	for range 2 { // the second time, a duplicate
		m := nats.NewMsg(bus.IntakeKeySubject("i-1"))
		m.Data = body
		m.Header.Set(bus.HeaderReplyTo, outcomes.Subject)
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		if _, err := outcomes.NextMsg(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	all := MustEvents(t, audit)
	created := filter(all, func(l eventLine) bool { return l.Type == "KeyCreated" && l.Owner.ID == "i-1" })
	dups := filter(all, func(l eventLine) bool { return l.Type == "IntakeDuplicate" && l.Owner.Kind == "intake" })
	if len(created) != 1 || len(dups) != 1 {
		t.Fatalf("events %v: want one KeyCreated on i-1 and one IntakeDuplicate", all)
	}
	sameEvents(t, MustEvents(t, audit, "--type", "IntakeDuplicate"), dups)
	sameEvents(t, MustEvents(t, audit, "--owner", "intake/"+dups[0].Owner.ID), dups)
	var key struct {
		Data struct{ ID string } `json:"data"`
	}
	if err := json.Unmarshal([]byte(created[0].raw), &key); err != nil || key.Data.ID == "" {
		t.Fatalf("KeyCreated %s: %v", created[0].raw, err)
	}
	sameEvents(t, MustEvents(t, audit, "--key", key.Data.ID), append(created, dups...))
}
