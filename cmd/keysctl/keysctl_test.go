package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// keysdBin is the keysd binary built once for these tests: they exercise
// the real process, its signals and its exit status.
var keysdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keysctl-test")
	if err != nil {
		panic(err)
	}
	if keysdBin, err = testkit.Build(dir, testkit.KeysdPackage); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// MustKeyFiles writes a fresh ed25519 key pair as OpenSSH files and returns
// the paths of the private and public halves.
func MustKeyFiles(tb testing.TB, dir, name string) (priv, pub string) {
	tb.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(sk, name)
	if err != nil {
		tb.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pk)
	if err != nil {
		tb.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(block), 0o600); err != nil {
		tb.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + name + "\n"
	if err := os.WriteFile(pub, []byte(line), 0o644); err != nil {
		tb.Fatal(err)
	}
	return priv, pub
}

// daemon is a keysd process.
type daemon struct {
	cmd    *exec.Cmd
	url    string
	env    []string
	stderr *bytes.Buffer
}

// MustRunKeysd starts the keysd binary with env and waits for /healthz.
func MustRunKeysd(tb testing.TB, env []string) *daemon {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := &daemon{url: "http://" + addr, env: env, stderr: &bytes.Buffer{}}
	d.cmd = exec.Command(keysdBin)
	d.cmd.Env = append(append(os.Environ(), env...), "KEYSD_HTTP_ADDR="+addr)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(d.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("keysd not healthy\n%s", d.stderr)
	return nil
}

// Stop sends SIGTERM and requires a clean exit.
func (d *daemon) Stop(tb testing.TB) {
	tb.Helper()
	http.DefaultClient.CloseIdleConnections()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	if err := d.cmd.Wait(); err != nil {
		tb.Fatalf("keysd exit after SIGTERM: %v\n%s", err, d.stderr)
	}
}

// keysctl runs the command in-process and returns its output.
func keysctl(tb testing.TB, env map[string]string, args ...string) (string, error) {
	tb.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(n string) string { return env[n] }, &out, &errOut)
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// MustAdminKeysd runs a keysd whose data and key files are in dir, with
// the bootstrap operator account admin, and returns it, keysctl's
// settings to act as admin, and must, which runs keysctl with them and
// fails the test when it fails.
func MustAdminKeysd(tb testing.TB, dir string) (d *daemon, ctl map[string]string, must func(args ...string) string) {
	tb.Helper()
	adminPriv, adminPub := MustKeyFiles(tb, dir, "admin")
	env := []string{"KEYSD_DATA_DIR=" + filepath.Join(dir, "data"), "KEYSD_BOOTSTRAP_ACCOUNT=admin", "KEYSD_BOOTSTRAP_KEY=" + adminPub}
	d = MustRunKeysd(tb, env)
	ctl = map[string]string{"KEYSCTL_URL": d.url, "KEYSCTL_ACCOUNT": "admin", "KEYSCTL_KEY_FILE": adminPriv}
	must = func(args ...string) string {
		tb.Helper()
		out, err := keysctl(tb, ctl, args...)
		if err != nil {
			tb.Fatalf("keysctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	return d, ctl, must
}

// lastSeq opens the stopped service's data directory and returns the
// event log's last sequence.
func lastSeq(tb testing.TB, dataDir string) uint64 {
	tb.Helper()
	ctx := context.Background()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: filepath.Join(dataDir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	l, err := bus.OpenEventLog(ctx, c)
	if err != nil {
		tb.Fatal(err)
	}
	seq, err := l.LastSeq(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

func TestFirstRun(t *testing.T) {
	dir := t.TempDir()
	adminPriv, adminPub := MustKeyFiles(t, dir, "admin")
	dataDir := filepath.Join(dir, "data")
	env := []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_BOOTSTRAP_ACCOUNT=admin", "KEYSD_BOOTSTRAP_KEY=" + adminPub}
	d := MustRunKeysd(t, env)
	ctl := map[string]string{"KEYSCTL_URL": d.url, "KEYSCTL_ACCOUNT": "admin", "KEYSCTL_KEY_FILE": adminPriv}

	_, bobPub := MustKeyFiles(t, dir, "bob-laptop")
	t.Run("AccountCreate", func(t *testing.T) {
		out, err := keysctl(t, ctl, "account", "create", "bob", "--key", bobPub)
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var got struct {
			Login string
			Keys  []struct{ Name string }
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || got.Login != "bob" || len(got.Keys) != 1 || got.Keys[0].Name != "bob-laptop" {
			t.Errorf("output %s (%v)", out, err)
		}
	})
	t.Run("ErrAccountCreateTwice", func(t *testing.T) {
		out, err := keysctl(t, ctl, "account", "create", "bob")
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("second create: %v %s", err, out)
		}
	})
	t.Run("KeyAddAndList", func(t *testing.T) {
		_, second := MustKeyFiles(t, dir, "bob-desktop")
		if out, err := keysctl(t, ctl, "key", "add", "bob", second, "--name", "desk"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		out, err := keysctl(t, ctl, "key", "list", "bob")
		if err != nil || !strings.Contains(out, `"desk"`) || !strings.Contains(out, `"bob-laptop"`) {
			t.Errorf("list: %v %s", err, out)
		}
	})
	t.Run("KeyAddExpires", func(t *testing.T) {
		_, temp := MustKeyFiles(t, dir, "bob-temp")
		expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		out, err := keysctl(t, ctl, "key", "add", "bob", temp, "--name", "temp", "--expires", expires)
		if err != nil || !strings.Contains(out, `"expires": "`+expires+`"`) || !strings.Contains(out, `"expired": false`) {
			t.Fatalf("add with --expires: %v %s", err, out)
		}
		_, carolPub := MustKeyFiles(t, dir, "carol")
		if out, err := keysctl(t, ctl, "account", "create", "carol", "--key", carolPub, "--expires", expires); err != nil || !strings.Contains(out, `"expires": "`+expires+`"`) {
			t.Errorf("account create with --expires: %v %s", err, out)
		}
		_, late := MustKeyFiles(t, dir, "bob-late")
		past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		if out, err := keysctl(t, ctl, "key", "add", "bob", late, "--expires", past); err == nil || !strings.Contains(err.Error(), "expires must be in the future") {
			t.Errorf("add with a past --expires: %v %s", err, out)
		}
	})
	t.Run("AccountPolicy", func(t *testing.T) {
		out, err := keysctl(t, ctl, "account", "policy", "bob", "--require-attested-keys")
		if err != nil || !strings.Contains(out, `"requireAttestedKeys": true`) {
			t.Fatalf("policy: %v %s", err, out)
		}
		out, err = keysctl(t, ctl, "account", "get", "bob")
		if err != nil || !strings.Contains(out, `"requireAttestedKeys": true`) {
			t.Errorf("get: %v %s", err, out)
		}
		_, third := MustKeyFiles(t, dir, "bob-phone")
		if out, err := keysctl(t, ctl, "key", "add", "bob", third); err == nil || !strings.Contains(err.Error(), "requireAttestedKeys") {
			t.Errorf("plain key under policy: %v %s", err, out)
		}
		if out, err := keysctl(t, ctl, "account", "policy", "bob"); err != nil {
			t.Errorf("clear: %v %s", err, out)
		}
	})
	t.Run("ProjectionsRebuild", func(t *testing.T) {
		out, err := keysctl(t, ctl, "projections", "rebuild")
		if err != nil || strings.TrimSpace(out) != "accounts: rebuilt\ninfrakeys: rebuilt\ntokens: rebuilt\ncas: rebuilt" {
			t.Errorf("rebuild: %v %q", err, out)
		}
		out, err = keysctl(t, ctl, "key", "list", "bob")
		if err != nil || !strings.Contains(out, `"desk"`) {
			t.Errorf("list after rebuild: %v %s", err, out)
		}
	})
	t.Run("Tokens", func(t *testing.T) {
		out, err := keysctl(t, ctl, "token", "create", "ci-reader", "--roles", "keys:read")
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		// stdout is the token alone, for TOKEN=$(keysctl token create ...):
		// ikt_<id>_<secret>.
		token := strings.TrimSuffix(out, "\n")
		parts := strings.SplitN(token, "_", 3)
		if len(parts) != 3 || parts[0] != "ikt" || strings.ContainsAny(token, " \n") {
			t.Fatalf("token create printed %q, want the token alone", out)
		}
		id := parts[1]
		req, _ := http.NewRequest("GET", d.url+"/api/resource-manager/infrastructure-keys/shared", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("token from keysctl: %v %v", err, resp)
		}
		if out, err := keysctl(t, ctl, "token", "list"); err != nil || !strings.Contains(out, id) || strings.Contains(out, token) {
			t.Errorf("list: %v %s", err, out)
		}
		if out, err := keysctl(t, ctl, "token", "revoke", id); err != nil {
			t.Fatalf("revoke: %v %s", err, out)
		}
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
			t.Errorf("revoked token: %v %v", err, resp)
		}
	})
	t.Run("MasterKey", func(t *testing.T) {
		path := filepath.Join(dir, "new-master.key")
		if out, err := keysctl(t, nil, "master-key", "generate", path); err != nil {
			t.Fatalf("generate: %v %s", err, out)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file: %v %v", err, fi)
		}
		if _, err := keysctl(t, nil, "master-key", "generate", path); err == nil {
			t.Error("generate over an existing key file succeeded")
		}
		out, err := keysctl(t, ctl, "master-key", "rewrap")
		if err != nil || !strings.Contains(out, "rewrapped") {
			t.Errorf("rewrap: %v %s", err, out)
		}
	})
	t.Run("ErrUnsignedAccount", func(t *testing.T) {
		bad := map[string]string{"KEYSCTL_URL": d.url, "KEYSCTL_ACCOUNT": "bob", "KEYSCTL_KEY_FILE": adminPriv}
		_, err := keysctl(t, bad, "key", "list", "bob")
		if err == nil || !strings.Contains(err.Error(), "InvalidCredentials") {
			t.Fatalf("got %v", err)
		}
		// keysd's message says nothing of what it refused; keysctl says
		// what it signed with.
		pubData, rerr := os.ReadFile(adminPriv + ".pub")
		if rerr != nil {
			t.Fatal(rerr)
		}
		pub, _, _, _, perr := ssh.ParseAuthorizedKey(pubData)
		if perr != nil {
			t.Fatal(perr)
		}
		for _, want := range []string{`account "bob"`, ssh.FingerprintSHA256(pub), ssh.FingerprintLegacyMD5(pub), adminPriv} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("401 %q does not say %s", err, want)
			}
		}
	})
	t.Run("FormerVariables", func(t *testing.T) {
		// keysctl's variables had keysd's prefix once; the names keysd
		// does not read still work, with a warning.
		former := map[string]string{"KEYSD_URL": d.url, "KEYSD_ACCOUNT": "admin", "KEYSD_KEY_FILE": adminPriv}
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), []string{"key", "list", "bob"}, func(n string) string { return former[n] }, &stdout, &stderr); err != nil {
			t.Fatalf("%v %s", err, stderr.String())
		}
		for _, name := range []string{"KEYSD_URL", "KEYSD_ACCOUNT", "KEYSD_KEY_FILE"} {
			if !strings.Contains(stderr.String(), name+" is deprecated, set KEYSCTL_"+strings.TrimPrefix(name, "KEYSD_")+" instead") {
				t.Errorf("no deprecation warning for %s in %q", name, stderr.String())
			}
		}
	})

	t.Run("BootstrapIsIdempotent", func(t *testing.T) {
		d.Stop(t)
		before := lastSeq(t, dataDir)
		d = MustRunKeysd(t, env)
		d.Stop(t)
		if after := lastSeq(t, dataDir); after != before {
			t.Errorf("restart with the same bootstrap moved the log from %d to %d", before, after)
		}
	})
}

// TestSIGTERMLosesNothing stops keysd with SIGTERM while clients write:
// every key acknowledged with 201 is there after a restart.
func TestSIGTERMLosesNothing(t *testing.T) {
	dir := t.TempDir()
	adminPriv, adminPub := MustKeyFiles(t, dir, "admin")
	dataDir := filepath.Join(dir, "data")
	env := []string{"KEYSD_DATA_DIR=" + dataDir, "KEYSD_BOOTSTRAP_ACCOUNT=admin", "KEYSD_BOOTSTRAP_KEY=" + adminPub}
	d := MustRunKeysd(t, env)
	c, err := newClient(d.url, "admin", adminPriv)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, pub := MustKeyFiles(t, t.TempDir(), fmt.Sprintf("w%d-%d", w, i))
				line, _ := readKeyFile(pub)
				name := fmt.Sprintf("w%d-%d", w, i)
				err := c.call(context.Background(), "POST", "/admin/keys", map[string]any{"name": name, "key": line}, nil)
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				} else if strings.Contains(err.Error(), "connection refused") {
					return
				}
			}
		})
	}
	// Let some writes land, then stop the service under load.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.Stop(t)
	close(stop)
	wg.Wait()

	d = MustRunKeysd(t, env)
	defer d.Stop(t)
	c.base = d.url
	var keys []struct{ Name string }
	if err := c.call(context.Background(), "GET", "/admin/keys", nil, &keys); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range keys {
		have[k.Name] = true
	}
	for _, name := range acked {
		if !have[name] {
			t.Errorf("acknowledged key %s is missing after SIGTERM and restart", name)
		}
	}
	t.Logf("%d keys acknowledged before SIGTERM, all present", len(acked))
}
