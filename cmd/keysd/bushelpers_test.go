package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/sealing"
)

// MustNATSServer starts a standalone JetStream server on a free loopback
// port, the "external deployment" keysd reaches with KEYSD_NATS_URL, with
// the users and permissions of deploy/nats/auth.conf: keysd, driver,
// manager and audit, each with its NKey seed in deploy/nats/creds.
func MustNATSServer(tb testing.TB) *server.Server {
	tb.Helper()
	opts, err := server.ProcessConfigFile("../../deploy/nats/auth.conf")
	if err != nil {
		tb.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(freeAddr(tb))
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", 0, 0
	opts.Port, _ = strconv.Atoi(port)
	opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = true, tb.TempDir(), true, true
	opts.MaxPayload = bus.MaxPayload // as deploy/nats configures it
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats server not ready")
	}
	tb.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// deployCreds is the NKey seed file of a user of deploy/nats/auth.conf:
// "keysd" or a role.
func deployCreds(tb testing.TB, user string) string {
	tb.Helper()
	f, err := filepath.Abs(filepath.Join("../../deploy/nats/creds", user+".nk"))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// externalEnv is the environment of a keysd on the external server ns,
// with keysd's credentials.
func externalEnv(tb testing.TB, ns *server.Server) map[string]string {
	tb.Helper()
	mk := filepath.Join(tb.TempDir(), "master.key")
	if _, _, err := sealing.LoadOrCreateMasterKeyFile(mk); err != nil {
		tb.Fatal(err)
	}
	return map[string]string{"KEYSD_NATS_URL": ns.ClientURL(), "KEYSD_NATS_CREDS": deployCreds(tb, "keysd"), "KEYSD_MASTER_KEY_FILE": mk}
}

// MustStartExternal starts keysd on an external NATS server.
func MustStartExternal(tb testing.TB, ns *server.Server) *keysd {
	tb.Helper()
	return MustStart(tb, externalEnv(tb, ns))
}

// connectExternal connects to the external server ns as role (driver,
// manager, audit), with the role's seed and inbox prefix.
func connectExternal(tb testing.TB, ns *server.Server, role string) *nats.Conn {
	tb.Helper()
	nc, err := bus.ConnectRole(ns.ClientURL(), role, deployCreds(tb, role))
	if err != nil {
		tb.Fatalf("connect as %s: %v", role, err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// connectService connects to the external server ns as keysd does, to
// look at what only the service may see (the intake and data key
// streams) and to pause its consumers.
func connectService(tb testing.TB, ns *server.Server) *nats.Conn {
	tb.Helper()
	auth, err := nats.NkeyOptionFromSeed(deployCreds(tb, "keysd"))
	if err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL(), auth)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// natsURL is where k's embedded server listens (MustStartLM).
func (k *keysd) natsURL() string { return "nats://" + k.Env["KEYSD_NATS_LISTEN"] }

// SeedFile is the NKey seed keysd wrote for role.
func (k *keysd) SeedFile(role string) string {
	return bus.SeedFile(filepath.Join(k.DataDir, "nats"), role)
}

// driver publishes to the intake stream as a resource driver does.
type driver struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newDriver(tb testing.TB, nc *nats.Conn) *driver {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return &driver{nc: nc, js: js}
}

// publish stores body on subject (with Nats-Msg-Id msgID when not empty)
// and returns the intake stream's ack and a channel for keysd's outcome.
func (d *driver) publish(tb testing.TB, subject string, body []byte, msgID string) (*jetstream.PubAck, <-chan domain.IntakeOutcome) {
	tb.Helper()
	inbox := d.nc.NewRespInbox()
	out := make(chan domain.IntakeOutcome, 1)
	sub, err := d.nc.Subscribe(inbox, func(m *nats.Msg) {
		var o domain.IntakeOutcome
		if err := json.Unmarshal(m.Data, &o); err == nil {
			select {
			case out <- o:
			default:
			}
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sub.Unsubscribe() })
	msg := nats.NewMsg(subject)
	msg.Data = body
	msg.Header.Set(bus.HeaderReplyTo, inbox)
	if msgID != "" {
		msg.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := d.js.PublishMsg(ctx, msg)
	if err != nil {
		tb.Fatalf("publish %s: %v", subject, err)
	}
	return ack, out
}

// outcome waits for keysd's answer to a publish.
func outcome(tb testing.TB, ch <-chan domain.IntakeOutcome) domain.IntakeOutcome {
	tb.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(20 * time.Second):
		tb.Fatal("no intake outcome within 20s")
		return domain.IntakeOutcome{}
	}
}

// genKey returns a fresh ed25519 key pair: the private half as OpenSSH PEM,
// the public half as an authorized_keys line.
func genKey(tb testing.TB, comment string) (private, public string) {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), AuthorizedKey(tb, priv, comment)
}

// driverKey is the JSON body of a driver key message.
func driverKey(tb testing.TB, v map[string]any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// instanceKeys lists an instance's keys through the LM API.
func (k *keysd) instanceKeys(tb testing.TB, id string) []map[string]any {
	tb.Helper()
	r := k.Admin.Do(tb, "GET", lmPrefix+"/instances/"+id, nil)
	if r.StatusCode != 200 {
		tb.Fatalf("list instance %s: %d %s", id, r.StatusCode, r.Body)
	}
	var keys []map[string]any
	r.JSON(tb, &keys)
	return keys
}

// eventually polls cond until it holds, or fails after a deadline.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// events replays the whole event log through nc (full access).
func events(tb testing.TB, nc *nats.Conn, subjects ...string) []bus.Recorded {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := bus.AttachEventLog(ctx, nc)
	if err != nil {
		tb.Fatal(err)
	}
	var out []bus.Recorded
	if _, err := l.Replay(ctx, bus.ReplayOptions{Subjects: subjects}, func(r bus.Recorded) error {
		out = append(out, r)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

func instanceSubject(id string) string { return bus.OwnerSubject(domain.InstanceOwner(id)) }
