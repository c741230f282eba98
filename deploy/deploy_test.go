// Package deploy_test checks the production shape that docker-compose.yml
// and deploy/ describe, without a container engine: the compose file
// validates, the NATS configuration loads in the server version keysd is
// tested with, its users have the permissions keysd's roles promise, and
// the Dockerfile builds what exists.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

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
	cmd := exec.Command("docker-compose", "-f", "docker-compose.yml", "config")
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
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

// TestNATSConfig loads deploy/nats/nats.conf as a node of the cluster
// would, with the nats-server version from go.mod.
func TestNATSConfig(t *testing.T) {
	t.Setenv("NATS_SERVER_NAME", "nats-1")
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
	if got, want := len(opts.Routes), 3; got != want {
		t.Errorf("cluster routes = %d, want %d", got, want)
	}
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
