// Package clustertest runs the production shape of docker-compose.yml on
// loopback: three nats-server processes (built from the nats-server
// module), configured from deploy/nats, forming a JetStream cluster, and
// keysd processes (the built binary) connected to different servers with
// KEYSD_REPLICAS=3. Both kinds are real processes, so either can be killed
// with SIGKILL, as a crash or a lost machine ends them. It proves
// that any replica serves any request, that the read models converge on
// the log across replicas, and that acknowledged writes survive the loss
// of a NATS server and of a keysd replica under load.
package clustertest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/http/httpsig"
	"github.com/infrakeys/infrakeys/internal/testkit"
	"github.com/infrakeys/infrakeys/projections"
	"github.com/infrakeys/infrakeys/sealing"
)

// keysdBin and natsBin are the keysd and nats-server binaries, built once:
// the replicas and the NATS nodes are real processes, so one can be killed
// with SIGKILL.
var keysdBin, natsBin string

// natsPackage is the nats-server command, at the version go.mod requires.
const natsPackage = "github.com/nats-io/nats-server/v2"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clustertest")
	if err != nil {
		panic(err)
	}
	if keysdBin, err = testkit.Build(dir, testkit.KeysdPackage); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	natsBin = filepath.Join(dir, "nats-server")
	if out, err := exec.Command("go", "build", "-o", natsBin, natsPackage).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", natsPackage, err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is three NATS servers and the keysd replicas using them.
type cluster struct {
	servers []*natsNode
	replica []*replica
	admin   crypto.Signer
	env     []string
	dir     string
}

// MustStartCluster starts three NATS servers configured from
// deploy/nats/nats.conf (ports, routes and store moved to loopback and a
// temporary directory) and two keysd replicas, the first connected to the
// first server, the second to the second.
func MustStartCluster(tb testing.TB) *cluster {
	tb.Helper()
	c := &cluster{dir: tb.TempDir(), admin: MustKey(tb)}
	const n = 3
	clientPorts, routePorts, monitorPorts := freePorts(tb, n), freePorts(tb, n), freePorts(tb, n)
	// The routes authenticate as docker-compose.yml sets them up.
	password := rand.Text()
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", password, p))
	}
	for i := range n {
		node := &natsNode{
			name: fmt.Sprintf("nats-%d", i+1),
			port: clientPorts[i],
			log:  &lockedBuffer{},
		}
		// The flags move what deploy/nats/nats.conf binds (4222, 8222,
		// 6222) to loopback, the file's copy its store (/data, which the
		// flag may not override) to a temporary directory; the rest,
		// JetStream's sync_interval, route authorization and the users,
		// is the file as docker-compose.yml uses it.
		node.args = []string{
			"-c", mustNodeConfig(tb, filepath.Join(c.dir, node.name)),
			"-a", "127.0.0.1", "-p", fmt.Sprint(clientPorts[i]), "-m", fmt.Sprint(monitorPorts[i]),
			"--cluster", fmt.Sprintf("nats://route:%s@127.0.0.1:%d", password, routePorts[i]),
		}
		node.env = append(os.Environ(),
			"NATS_SERVER_NAME="+node.name,
			"NATS_CLUSTER_PASSWORD="+password,
			"NATS_ROUTES=["+strings.Join(routes, ", ")+"]")
		node.start(tb)
		c.servers = append(c.servers, node)
	}
	tb.Cleanup(func() {
		for _, s := range c.servers {
			s.stop()
		}
		if tb.Failed() {
			for _, s := range c.servers {
				tb.Logf("%s log:\n%s", s.name, s.log)
			}
		}
	})
	c.mustWaitForJetStream(tb)

	pubPath := filepath.Join(c.dir, "admin.pub")
	if err := os.WriteFile(pubPath, ssh.MarshalAuthorizedKey(MustSSHPublic(tb, c.admin)), 0o600); err != nil {
		tb.Fatal(err)
	}
	master, err := sealing.NewMasterKey()
	if err != nil {
		tb.Fatal(err)
	}
	creds, err := filepath.Abs("../deploy/nats/creds/keysd.nk")
	if err != nil {
		tb.Fatal(err)
	}
	c.env = []string{
		"KEYSD_NATS_CREDS=" + creds,
		"KEYSD_REPLICAS=3",
		"KEYSD_MASTER_KEY=" + master.Encode(),
		"KEYSD_BOOTSTRAP_ACCOUNT=admin",
		"KEYSD_BOOTSTRAP_KEY=" + pubPath,
		"KEYSD_LOG_LEVEL=info",
		// One KeyDeleted per append: the cascade of 100 keys then takes
		// 100 round trips to the cluster, long enough for
		// CascadeSurvivesKillingItsReplica to kill its replica mid-way (in
		// batches of 1,000 it is one append, over before the kill lands).
		"KEYSD_CASCADE_BATCH=1",
	}
	// One after the other: replicas that create the same replicated stream
	// at the same moment both get no answer from the cluster and retry
	// after their 5 s per-call timeout, once per stream and bucket; that
	// works, as a first deployment shows, but costs half a minute here.
	c.replica = make([]*replica, 2)
	for i := range c.replica {
		c.replica[i] = c.newReplica(tb, fmt.Sprintf("keysd-%c", 'a'+i), c.servers[i].ClientURL())
		if c.replica[i].start(tb); c.replica[i].err != nil {
			tb.Fatal(c.replica[i].err)
		}
	}
	return c
}

// mustNodeConfig copies deploy/nats/nats.conf and the auth.conf it
// includes into dir, with dir/data as the JetStream store, and returns the
// copy's path.
func mustNodeConfig(tb testing.TB, dir string) string {
	tb.Helper()
	conf, err := os.ReadFile("../deploy/nats/nats.conf")
	if err != nil {
		tb.Fatal(err)
	}
	auth, err := os.ReadFile("../deploy/nats/auth.conf")
	if err != nil {
		tb.Fatal(err)
	}
	const store = "store_dir: /data"
	if strings.Count(string(conf), store) != 1 {
		tb.Fatalf("deploy/nats/nats.conf: no single %q to move", store)
	}
	text := strings.Replace(string(conf), store, fmt.Sprintf("store_dir: %q", filepath.Join(dir, "data")), 1)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// natsNode is one nats-server process.
type natsNode struct {
	name   string
	port   int
	args   []string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	log    *lockedBuffer
}

// start runs the process and waits until it accepts client connections.
func (n *natsNode) start(tb testing.TB) {
	tb.Helper()
	n.cmd = exec.Command(natsBin, n.args...)
	n.cmd.Env = n.env
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	n.exited = exited
	go func() { _ = n.cmd.Wait(); close(exited) }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			tb.Fatalf("%s exited: %v\n%s", n.name, n.cmd.ProcessState, n.log)
		default:
		}
		if conn, err := net.Dial("tcp", n.hostPort()); err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s not accepting connections after 30s\n%s", n.name, n.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the process with SIGKILL: no leader stepdown, no flush, no
// goodbye to the routes; its peers learn of it by missed heartbeats.
func (n *natsNode) Kill(tb testing.TB) {
	tb.Helper()
	if err := n.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s still running 10s after SIGKILL", n.name)
	}
}

func (n *natsNode) stop() {
	if n.Running() {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.exited
	}
}

// Running reports whether the process has not ended.
func (n *natsNode) Running() bool {
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Name is the server name, as JetStream's cluster info reports leaders.
func (n *natsNode) Name() string { return n.name }

func (n *natsNode) hostPort() string { return fmt.Sprintf("127.0.0.1:%d", n.port) }

// ClientURL is where clients connect.
func (n *natsNode) ClientURL() string { return "nats://" + n.hostPort() }

// mustWaitForJetStream polls until the cluster has a JetStream meta leader
// and answers account requests.
func (c *cluster) mustWaitForJetStream(tb testing.TB) {
	tb.Helper()
	nc := c.Connect(tb)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	Eventually(tb, 60*time.Second, "JetStream cluster ready", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}

// URLs lists the client URLs of the servers still running.
func (c *cluster) URLs() string {
	var urls []string
	for _, s := range c.servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// Connect dials the cluster as keysd's user, for inspection.
func (c *cluster) Connect(tb testing.TB) *nats.Conn {
	tb.Helper()
	auth, err := nats.NkeyOptionFromSeed("../deploy/nats/creds/keysd.nk")
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(c.URLs(), auth, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// jsOf returns JetStream on nc.
func jsOf(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// ServerNamed returns the index of the running server called name, or -1.
func (c *cluster) ServerNamed(name string) int {
	for i, s := range c.servers {
		if s.Name() == name && s.Running() {
			return i
		}
	}
	return -1
}

// replica is one keysd process.
type replica struct {
	name   string
	url    string
	env    []string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	stderr *lockedBuffer
	err    error
}

func (c *cluster) newReplica(tb testing.TB, name, natsURL string) *replica {
	tb.Helper()
	addr := freeAddr(tb)
	r := &replica{name: name, url: "http://" + addr, stderr: &lockedBuffer{}}
	r.env = append(append(os.Environ(), c.env...), "KEYSD_HTTP_ADDR="+addr, "KEYSD_NATS_URL="+natsURL)
	tb.Cleanup(func() {
		if r.exited != nil {
			_ = r.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-r.exited:
			case <-time.After(30 * time.Second):
				_ = r.cmd.Process.Kill()
				<-r.exited
			}
		}
		if tb.Failed() {
			tb.Logf("%s log:\n%s", r.name, r.stderr)
		}
	})
	return r
}

// start runs the process and waits for /healthz, which answers once the
// streams, buckets and bootstrap account are in place.
func (r *replica) start(tb testing.TB) {
	r.cmd = exec.Command(keysdBin)
	r.cmd.Env = r.env
	r.cmd.Stderr = r.stderr
	if r.err = r.cmd.Start(); r.err != nil {
		return
	}
	exited := make(chan struct{})
	r.exited = exited
	go func() { _ = r.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			r.err = fmt.Errorf("%s exited: %v\n%s", r.name, r.cmd.ProcessState, r.stderr)
			r.exited = nil
			return
		default:
		}
		if resp, err := http.Get(r.url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.err = fmt.Errorf("%s not healthy after 90s\n%s", r.name, r.stderr)
}

// Kill ends the process with SIGKILL: no graceful shutdown, consumers and
// requests in flight are cut off.
func (r *replica) Kill(tb testing.TB) {
	tb.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-r.exited:
		r.exited = nil
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s still running 10s after SIGKILL", r.name)
	}
}

// lockedBuffer collects a process's log lines.
type lockedBuffer = testkit.LockedBuffer

// client signs CloudAPI requests as one account.
type client struct {
	http   *http.Client
	login  string
	signer *httpsig.Signer
}

func newClient(tb testing.TB, login string, key crypto.Signer) *client {
	tb.Helper()
	return &client{
		http:  &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
		login: login,
		signer: &httpsig.Signer{
			KeyID: httpsig.KeyIDFor(login, MustSSHPublic(tb, key)),
			Key:   key,
		},
	}
}

// Do sends a signed request to base and returns the status and body; err is
// a transport error (no answer).
func (c *client) Do(base, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.signer.Sign(req); err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// MustDo is Do that requires an answer with status want.
func (c *client) MustDo(tb testing.TB, base, method, path string, body any, want int) []byte {
	tb.Helper()
	status, data, err := c.Do(base, method, path, body)
	if err != nil {
		tb.Fatalf("%s %s%s: %v", method, base, path, err)
	}
	if status != want {
		tb.Fatalf("%s %s%s: %d %s, want %d", method, base, path, status, data, want)
	}
	return data
}

// keyView is a key as the CloudAPI surface shows it.
type keyView struct {
	Name        string `json:"name"`
	Fingerprint string `json:"fingerprint"`
	Key         string `json:"key"`
}

// MustCreateAccount has the operator create login with a first key, and
// returns a client for it.
func (c *cluster) MustCreateAccount(tb testing.TB, via *replica, login string) *client {
	tb.Helper()
	key := MustKey(tb)
	admin := newClient(tb, "admin", c.admin)
	admin.MustDo(tb, via.url, http.MethodPost, "/--admin/accounts",
		map[string]any{"login": login, "key": AuthorizedKey(tb, key, login+"-first")}, http.StatusCreated)
	return newClient(tb, login, key)
}

// MustKey returns a fresh ed25519 private key.
func MustKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return priv
}

// MustSSHPublic returns the SSH public key of priv.
func MustSSHPublic(tb testing.TB, priv crypto.Signer) ssh.PublicKey {
	tb.Helper()
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

// AuthorizedKey is priv's public key as an OpenSSH line with comment.
func AuthorizedKey(tb testing.TB, priv crypto.Signer, comment string) string {
	tb.Helper()
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(MustSSHPublic(tb, priv)))) + " " + comment
}

// Eventually polls f until it returns nil or the deadline passes.
func Eventually(tb testing.TB, within time.Duration, what string, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePorts(tb, 1)[0])
}

// logState folds the whole event log into the accounts it describes,
// with domain.ApplyAccountEvent: what a fresh rebuild would produce.
func logState(tb testing.TB, nc *nats.Conn) (map[string]*domain.Account, []bus.Recorded) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log, err := bus.AttachEventLog(ctx, nc)
	if err != nil {
		tb.Fatal(err)
	}
	accounts := map[string]*domain.Account{}
	var events []bus.Recorded
	_, err = log.Replay(ctx, bus.ReplayOptions{Subjects: []string{bus.KindSubjects(domain.OwnerAccount)}}, func(r bus.Recorded) error {
		events = append(events, r)
		a, err := domain.ApplyAccountEvent(accounts[r.Event.Owner.ID], r.Event, r.Seq)
		accounts[r.Event.Owner.ID] = a
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return accounts, events
}

// readModel returns the documents of the accounts bucket as stored.
func readModel(tb testing.TB, nc *nats.Conn) map[string]*domain.Account {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, projections.AccountsBucket)
	if err != nil {
		tb.Fatal(err)
	}
	lister, err := kv.ListKeysFiltered(ctx, "account.*")
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]*domain.Account{}
	for k := range lister.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			tb.Fatalf("get %s: %v", k, err)
		}
		a := new(domain.Account)
		if err := json.Unmarshal(e.Value(), a); err != nil {
			tb.Fatalf("document %s: %v", k, err)
		}
		out[a.Login] = a
	}
	return out
}

// projectionsIdle reports an error until every projection consumer has
// handled every event.
func projectionsIdle(nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for _, name := range []string{projections.AccountsName, projections.InfraKeysName, projections.TokensName} {
		if err := durableIdle(ctx, js, "projection-"+name); err != nil {
			return err
		}
	}
	return nil
}

// consumerIdle reports an error until the durable consumer name of the
// event log has handled every event.
func consumerIdle(nc *nats.Conn, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return durableIdle(ctx, js, name)
}

func durableIdle(ctx context.Context, js jetstream.JetStream, name string) error {
	cons, err := js.Consumer(ctx, bus.StreamName, name)
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumPending > 0 || info.NumAckPending > 0 {
		return fmt.Errorf("%s: %d pending, %d unacknowledged", name, info.NumPending, info.NumAckPending)
	}
	return nil
}

// MustMatchLog requires the accounts read model to equal a fresh fold of
// the log: every document at its owner's last sequence, no key lost or
// doubled.
func MustMatchLog(tb testing.TB, nc *nats.Conn) map[string]*domain.Account {
	tb.Helper()
	want, _ := logState(tb, nc)
	got := readModel(tb, nc)
	if len(got) != len(want) {
		tb.Errorf("read model has %d accounts, the log %d", len(got), len(want))
	}
	for login, w := range want {
		g := got[login]
		wj, _ := json.Marshal(w)
		gj, _ := json.Marshal(g)
		if !bytes.Equal(wj, gj) {
			tb.Errorf("account %s: read model differs from the log\n read model %s\n log        %s", login, gj, wj)
		}
	}
	return want
}
