// Package deploy_test checks the production shape that docker-compose.yml
// and deploy/ describe, without a container engine: the compose file
// validates, the NATS configuration loads in the server version keysd is
// tested with, its users have the permissions keysd's roles promise, and
// the Dockerfile builds what exists.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/infrakeys/infrakeys/bus"
)

// TestCompose validates docker-compose.yml with docker-compose (as CI
// installs it; no engine needed) and checks the topology it describes.
func TestCompose(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("docker-compose is not installed; .ci/run installs it")
		}
		t.Skip("docker-compose is not installed")
	}
	compose := func(env ...string) ([]byte, string, error) {
		cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "config")
		cmd.Dir = ".."
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(v string) bool {
			return strings.HasPrefix(v, "NATS_CLUSTER_PASSWORD=")
		}), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return out, stderr.String(), err
	}
	// The routes between NATS nodes have no default password.
	if _, stderr, err := compose(); err == nil || !strings.Contains(stderr, "set NATS_CLUSTER_PASSWORD") {
		t.Errorf("docker-compose config without NATS_CLUSTER_PASSWORD: err %v, stderr %q; want a refusal naming it", err, stderr)
	}
	out, stderr, err := compose("NATS_CLUSTER_PASSWORD=" + routePassword)
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr)
	}
	var cfg struct {
		Services map[string]struct {
			Image       string
			Build       any
			Command     []string
			Environment map[string]string
			Volumes     []any
			Secrets     []struct{ Source string }
		}
		Secrets map[string]struct{ File string }
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("docker-compose config output: %v", err)
	}
	var nats, keysd []string
	for name, s := range cfg.Services {
		switch {
		case strings.HasPrefix(s.Image, "nats:"):
			nats = append(nats, name)
			if got, want := s.Environment["NATS_SERVER_NAME"], name; got != want {
				t.Errorf("%s: NATS_SERVER_NAME = %q, want %q (the routes in deploy/nats/nats.conf name the services)", name, got, want)
			}
			// The node's configuration, with the environment compose gives it.
			for _, v := range []string{"NATS_SERVER_NAME", "NATS_CLUSTER_PASSWORD", "NATS_ROUTES"} {
				t.Setenv(v, s.Environment[v])
			}
			opts, err := server.ProcessConfigFile("nats/nats.conf")
			if err != nil {
				t.Errorf("%s: deploy/nats/nats.conf with its environment: %v", name, err)
				continue
			}
			MustAuthenticateRoutes(t, name, opts, routePassword)
		case s.Build != nil:
			keysd = append(keysd, name)
			if got, want := s.Environment["KEYSD_REPLICAS"], "3"; got != want {
				t.Errorf("%s: KEYSD_REPLICAS = %q, want %q", name, got, want)
			}
			for _, v := range []string{"KEYSD_NATS_URL", "KEYSD_NATS_CREDS", "KEYSD_MASTER_KEY_FILE"} {
				if s.Environment[v] == "" {
					t.Errorf("%s: %s is not set", name, v)
				}
			}
		}
	}
	slices.Sort(nats)
	if got, want := nats, []string{"nats-1", "nats-2", "nats-3"}; !slices.Equal(got, want) {
		t.Errorf("NATS services = %v, want %v", got, want)
	}
	if len(keysd) < 2 {
		t.Errorf("keysd replicas = %v, want two or more", keysd)
	}
	creds := cfg.Secrets["keysd_nats"].File
	if _, err := os.Stat(creds); err != nil {
		t.Errorf("secret keysd_nats: %v", err)
	}
}

// routePassword stands for the operator's NATS_CLUSTER_PASSWORD.
const routePassword = "0123456789abcdef0123456789abcdef"

// setNodeEnv sets the environment docker-compose.yml gives a NATS node.
func setNodeEnv(t *testing.T, name string, routes ...string) {
	t.Setenv("NATS_SERVER_NAME", name)
	t.Setenv("NATS_CLUSTER_PASSWORD", routePassword)
	t.Setenv("NATS_ROUTES", "["+strings.Join(routes, ", ")+"]")
}

// MustAuthenticateRoutes fails unless the cluster of opts requires the
// route user and password, and every configured route presents them.
func MustAuthenticateRoutes(t *testing.T, node string, opts *server.Options, password string) {
	t.Helper()
	if opts.Cluster.Username != "route" || opts.Cluster.Password != password {
		t.Errorf("%s: cluster authorization %q/%q, want user route with NATS_CLUSTER_PASSWORD", node, opts.Cluster.Username, opts.Cluster.Password)
	}
	if got, want := len(opts.Routes), 3; got != want {
		t.Errorf("%s: cluster routes = %d, want %d", node, got, want)
	}
	for _, r := range opts.Routes {
		pw, _ := r.User.Password()
		if r.User.Username() != "route" || pw != password {
			t.Errorf("%s: route to %s does not present the cluster's credentials", node, r.Host)
		}
	}
}

// TestNATSConfig loads deploy/nats/nats.conf as a node of the cluster
// would, with the nats-server version from go.mod.
func TestNATSConfig(t *testing.T) {
	var routes []string
	for i := 1; i <= 3; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://route:%s@nats-%d:6222", routePassword, i))
	}
	setNodeEnv(t, "nats-1", routes...)
	opts, err := server.ProcessConfigFile("nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := opts.ServerName, "nats-1"; got != want {
		t.Errorf("server_name = %q, want %q", got, want)
	}
	if !opts.JetStream || !opts.SyncAlways {
		t.Errorf("jetstream = %v, sync_interval always = %v; want both", opts.JetStream, opts.SyncAlways)
	}
	if got, want := opts.MaxPayload, int32(bus.MaxPayload); got != want {
		t.Errorf("max_payload = %d, want %d as the embedded server (bus.MaxPayload)", got, want)
	}
	MustAuthenticateRoutes(t, "nats-1", opts, routePassword)
	if opts.Cluster.Name == "" {
		t.Error("the cluster has no name")
	}

	users := map[string]*server.NkeyUser{}
	for _, u := range opts.Nkeys {
		users[u.Nkey] = u
	}
	if got, want := len(users), len(bus.Roles)+1; got != want {
		t.Errorf("%d NKey users, want %d (keysd and %v)", got, want, bus.Roles)
	}
	keysd := users[MustSeedPublic(t, "keysd")]
	if keysd == nil {
		t.Fatal("creds/keysd.nk is not a user of deploy/nats/auth.conf")
	}
	if keysd.Permissions == nil || keysd.Permissions.Publish == nil || !slices.Contains(keysd.Permissions.Publish.Allow, "$JS.API.>") {
		t.Errorf("keysd may not use the JetStream API: %+v", keysd.Permissions)
	}
	for _, role := range bus.Roles {
		t.Run(role, func(t *testing.T) {
			u := users[MustSeedPublic(t, role)]
			if u == nil {
				t.Fatalf("creds/%s.nk is not a user of deploy/nats/auth.conf", role)
			}
			if got, want := normalize(u.Permissions), normalize(bus.Permissions(role)); !reflect.DeepEqual(got, want) {
				t.Errorf("permissions in deploy/nats/auth.conf differ from bus.Permissions(%q)\n got %s\nwant %s", role, show(got), show(want))
			}
		})
	}
}

// TestDockerfile checks that what the Dockerfile copies exists and that
// what it builds is a command.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, m := range regexp.MustCompile(`(?m)^COPY\s+([^-\n][^\n]*)$`).FindAllStringSubmatch(text, -1) {
		fields := strings.Fields(m[1])
		for _, src := range fields[:len(fields)-1] {
			if _, err := os.Stat(filepath.Join("..", src)); err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}
	pkgs := regexp.MustCompile(`go build [^\n]*?(\./cmd/\S+)`).FindAllStringSubmatch(text, -1)
	if len(pkgs) == 0 {
		t.Fatal("the Dockerfile builds no ./cmd/ package")
	}
	for _, m := range pkgs {
		cmd := exec.Command("go", "list", "-f", "{{.Name}}", m[1])
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "main" {
			t.Errorf("go list %s: %v %s", m[1], err, out)
		}
	}
}

// MustSeedPublic returns the public key of the development seed of role.
func MustSeedPublic(tb testing.TB, role string) string {
	tb.Helper()
	seed, err := os.ReadFile(filepath.Join("nats", "creds", role+".nk"))
	if err != nil {
		tb.Fatal(err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		tb.Fatalf("creds/%s.nk: %v", role, err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func show(p *server.Permissions) string {
	data, _ := json.Marshal(p)
	return string(data)
}

// normalize sorts permission lists and drops empty ones, so that equal
// permissions compare equal however they were written.
func normalize(p *server.Permissions) *server.Permissions {
	if p == nil {
		return nil
	}
	sp := func(s *server.SubjectPermission) *server.SubjectPermission {
		if s == nil || (len(s.Allow) == 0 && len(s.Deny) == 0) {
			return nil
		}
		out := &server.SubjectPermission{Allow: slices.Sorted(slices.Values(s.Allow)), Deny: slices.Sorted(slices.Values(s.Deny))}
		if len(out.Allow) == 0 {
			out.Allow = nil
		}
		if len(out.Deny) == 0 {
			out.Deny = nil
		}
		return out
	}
	return &server.Permissions{Publish: sp(p.Publish), Subscribe: sp(p.Subscribe), Response: p.Response}
}

// TestNATSRoutesNeedThePassword runs two nodes of deploy/nats/nats.conf on
// loopback: a node that presents the cluster's password joins, a
// connection to the route port without it is refused.
func TestNATSRoutesNeedThePassword(t *testing.T) {
	start := func(name string, routes ...string) *server.Server {
		setNodeEnv(t, name, routes...)
		opts, err := server.ProcessConfigFile("nats/nats.conf")
		if err != nil {
			t.Fatal(err)
		}
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", -1
		// Routes are what is tested; a JetStream cluster of these two
		// would wait for a third node.
		opts.JetStream = false
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s did not start", name)
		}
		return s
	}
	a := start("nats-a")
	addr := a.ClusterAddr().String()

	// Without the password: refused.
	for _, creds := range []string{``, `"user":"route","pass":"wrong",`} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		info, err := r.ReadString('\n')
		if err != nil || !strings.Contains(info, `"auth_required":true`) {
			t.Errorf("route port INFO %q (%v): want auth_required", info, err)
		}
		fmt.Fprintf(conn, "CONNECT {%s\"verbose\":false,\"pedantic\":false,\"name\":\"intruder\",\"cluster\":\"infrakeys\"}\r\nPING\r\n", creds)
		reply, _ := r.ReadString('\n')
		if !strings.Contains(reply, "Authorization Violation") {
			t.Errorf("route CONNECT with credentials {%s}: got %q, want an authorization violation", creds, reply)
		}
		conn.Close()
	}

	// With it: the route forms.
	b := start("nats-b", fmt.Sprintf("nats-route://route:%s@%s", routePassword, addr))
	deadline := time.Now().Add(20 * time.Second)
	for a.NumRoutes() == 0 || b.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no route between nodes that share the cluster password: %d, %d", a.NumRoutes(), b.NumRoutes())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
