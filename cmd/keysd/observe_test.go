package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
)

const lmShared = "/api/resource-manager/infrastructure-keys/shared"

// MustStartWithIntake starts keysd with its embedded NATS server listening
// for drivers, and returns it with a JetStream client connected as the
// driver role.
func MustStartWithIntake(tb testing.TB) (*keysd, jetstream.JetStream) {
	tb.Helper()
	addr := freeAddr(tb)
	k := MustStart(tb, map[string]string{"KEYSD_NATS_LISTEN": addr})
	nc, err := bus.ConnectRole("nats://"+addr, bus.RoleDriver, bus.SeedFile(filepath.Join(k.DataDir, "nats"), bus.RoleDriver))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return k, js
}

// scrape returns the metric families keysd exposes on /metrics.
func (k *keysd) scrape(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	r := send(tb, newRequest(tb, http.MethodGet, k.URL+"/metrics", nil))
	if r.StatusCode != http.StatusOK {
		tb.Fatalf("GET /metrics: %d %s", r.StatusCode, r.Body)
	}
	return parseMetrics(tb, r.Body)
}

// parseMetrics parses the Prometheus text format.
func parseMetrics(tb testing.TB, body []byte) map[string]*dto.MetricFamily {
	tb.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		tb.Fatalf("GET /metrics: not the Prometheus text format: %v", err)
	}
	return families
}

// plainGet gets url with no signature and no header checks.
func plainGet(tb testing.TB, url string) (int, []byte) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, body
}

// metricValue returns the value of the sample of family name whose labels
// include labels (a counter's or gauge's value, a histogram's count), and
// whether there is one.
func metricValue(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	k, driver := MustStartWithIntake(t)
	alice := MustAccount(t, k, "alice")
	if r := alice.Do(t, "GET", "/alice/keys", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("list: %d", r.StatusCode)
	}
	if r := alice.Do(t, "GET", "/alice/keys/nope", nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("get missing: %d", r.StatusCode)
	}
	if r := k.Admin.Do(t, "DELETE", "/api/resource-manager/infrastructure-keys/instances/vm-1", nil); r.StatusCode != http.StatusAccepted {
		t.Fatalf("remove instance: %d %s", r.StatusCode, r.Body)
	}
	ctx := context.Background()
	if _, err := driver.Publish(ctx, bus.IntakeKeySubject("vm-2"), []byte("not a key")); err != nil {
		t.Fatal(err)
	}

	var families map[string]*dto.MetricFamily
	eventually(t, 10*time.Second, "the cascade and the intake are counted", func() bool {
		families = k.scrape(t)
		cascades, _ := metricValue(families, "keysd_cascade_duration_seconds", nil)
		rejected, _ := metricValue(families, "keysd_intake_rejections_total", map[string]string{"reason": "malformed"})
		return cascades >= 1 && rejected == 1
	})

	t.Run("RequestsByRouteTemplate", func(t *testing.T) {
		for _, c := range []struct {
			labels map[string]string
		}{
			{map[string]string{"method": "GET", "route": "/:login/keys", "code": "200"}},
			{map[string]string{"method": "GET", "route": "/:login/keys/:key", "code": "404"}},
			{map[string]string{"method": "POST", "route": "/--admin/accounts", "code": "201"}},
			{map[string]string{"method": "DELETE", "route": "/api/resource-manager/infrastructure-keys/instances/:instanceId", "code": "202"}},
		} {
			if got, ok := metricValue(families, "keysd_http_requests_total", c.labels); !ok || got < 1 {
				t.Errorf("keysd_http_requests_total%v = %v (present %v), want >= 1", c.labels, got, ok)
			}
		}
		if got, ok := metricValue(families, "keysd_http_request_duration_seconds", map[string]string{"method": "GET", "route": "/:login/keys"}); !ok || got < 1 {
			t.Errorf("latency histogram of GET /:login/keys: count %v, want >= 1", got)
		}
	})

	t.Run("NoUnboundedLabels", func(t *testing.T) {
		for name, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if v := l.GetValue(); strings.Contains(v, "alice") || strings.Contains(v, "vm-1") || strings.Contains(v, "nope") {
						t.Errorf("%s has label %s=%q: a login, key or instance in a label", name, l.GetName(), v)
					}
				}
			}
		}
	})

	t.Run("Appends", func(t *testing.T) {
		if got, _ := metricValue(families, "keysd_event_append_duration_seconds", map[string]string{"result": "ok"}); got < 2 {
			t.Errorf("appends ok = %v, want >= 2 (bootstrap, account, instance removal)", got)
		}
		last, ok := metricValue(families, "keysd_event_log_last_sequence", nil)
		if !ok || last < 2 {
			t.Errorf("keysd_event_log_last_sequence = %v (present %v)", last, ok)
		}
		// Nothing is ever deleted from the log: it holds every event.
		if got, ok := metricValue(families, "keysd_event_log_messages", nil); !ok || got != last {
			t.Errorf("keysd_event_log_messages = %v (present %v), want %v (the last sequence)", got, ok, last)
		}
		if got, ok := metricValue(families, "keysd_event_log_bytes", nil); !ok || got < 2*100 {
			t.Errorf("keysd_event_log_bytes = %v (present %v), want at least 100 bytes an event", got, ok)
		}
	})

	t.Run("ProjectionLag", func(t *testing.T) {
		for _, p := range []string{"accounts", "infrakeys", "tokens", "cas"} {
			if _, ok := metricValue(families, "keysd_projection_lag_events", map[string]string{"projection": p}); !ok {
				t.Errorf("no keysd_projection_lag_events for %s", p)
			}
		}
	})

	t.Run("CascadeAndIntake", func(t *testing.T) {
		if _, ok := metricValue(families, "keysd_cascade_backlog", nil); !ok {
			t.Error("no keysd_cascade_backlog")
		}
		if _, ok := metricValue(families, "keysd_intake_backlog", nil); !ok {
			t.Error("no keysd_intake_backlog")
		}
		if _, ok := metricValue(families, "keysd_shredder_backlog", nil); !ok {
			t.Error("no keysd_shredder_backlog")
		}
		if got, _ := metricValue(families, "keysd_intake_messages_total", map[string]string{"outcome": "rejected"}); got != 1 {
			t.Errorf("intake rejected = %v, want 1", got)
		}
		if got, ok := metricValue(families, "keysd_intake_rejections_total", map[string]string{"reason": "mismatch"}); !ok || got != 0 {
			t.Errorf("intake rejections for mismatch = %v (present %v), want 0 and present", got, ok)
		}
		if got, _ := metricValue(families, "keysd_metrics_probe_errors", nil); got != 0 {
			t.Errorf("probe errors = %v, want 0", got)
		}
	})

	t.Run("Runtime", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
			if _, ok := families[name]; !ok {
				t.Errorf("no %s", name)
			}
		}
	})
}

func TestReadyz(t *testing.T) {
	k := MustStart(t, nil)
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	eventually(t, 10*time.Second, "/readyz answers 200", func() bool {
		r := send(t, newRequest(t, http.MethodGet, k.URL+"/readyz", nil))
		r.JSON(t, &body)
		return r.StatusCode == http.StatusOK
	})
	if got, want := body.Status, "ready"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
	for _, c := range []string{"eventLog", "projection:accounts", "projection:infrakeys", "projection:tokens", "projection:cas"} {
		if got, want := body.Checks[c], "ok"; got != want {
			t.Errorf("check %s = %q, want %q", c, got, want)
		}
	}
}

// TestLogs checks that keysd logs JSON, that every request line carries
// the request id the client saw, and that private keys written through
// the API and the driver intake never reach the logs.
func TestLogs(t *testing.T) {
	k, driver := MustStartWithIntake(t)

	_, priv, _ := ed25519.GenerateKey(nil)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(block))
	sshPub, _ := ssh.NewPublicKey(priv.Public())
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	_, other, _ := ed25519.GenerateKey(nil)
	otherBlock, _ := ssh.MarshalPrivateKey(other, "")
	otherPEM := string(pem.EncodeToMemory(otherBlock))

	created := k.Admin.Do(t, "POST", lmShared, map[string]any{"name": "deploy", "publicKey": pub, "privateKey": privPEM})
	if created.StatusCode != http.StatusCreated {
		t.Fatalf("create shared key: %d %s", created.StatusCode, created.Body)
	}
	// Refusals log their cause: it must not quote the key either.
	if r := k.Admin.Do(t, "POST", lmShared, map[string]any{"name": "mismatch", "publicKey": pub, "privateKey": otherPEM}); r.StatusCode < 400 {
		t.Fatalf("mismatched pair accepted: %d", r.StatusCode)
	}
	if r := k.Admin.Do(t, "POST", lmShared, map[string]any{"name": "broken", "privateKey": otherPEM[:len(otherPEM)/2]}); r.StatusCode < 400 {
		t.Fatalf("truncated key accepted: %d", r.StatusCode)
	}
	if r := k.Admin.Do(t, "GET", lmShared+"/deploy?includePrivateKey=true", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("get with private key: %d %s", r.StatusCode, r.Body)
	}
	ctx := context.Background()
	if _, err := driver.Publish(ctx, bus.IntakeKeySubject("vm-1"), []byte("driver-key#"+otherPEM+"#"+pub)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the intake logs the mismatched driver key", func() bool {
		return strings.Contains(k.stderr.String(), `"msg":"intake processed"`)
	})
	k.Stop(t)
	logs := k.stderr.String()

	t.Run("JSON", func(t *testing.T) {
		sc := bufio.NewScanner(strings.NewReader(logs))
		sc.Buffer(nil, 1<<20)
		requests := map[string]bool{}
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Errorf("not a JSON line: %s", sc.Text())
				continue
			}
			for _, field := range []string{"time", "level", "msg"} {
				if _, ok := line[field]; !ok {
					t.Errorf("line without %s: %s", field, sc.Text())
				}
			}
			if line["msg"] == "request" {
				id, _ := line["requestId"].(string)
				if id == "" {
					t.Errorf("request line without requestId: %s", sc.Text())
				}
				requests[id] = true
			}
		}
		if id := created.Header.Get("Request-Id"); !requests[id] {
			t.Errorf("no request line with the Request-Id the client saw (%s)", id)
		}
	})

	t.Run("NoKeyMaterial", func(t *testing.T) {
		for _, key := range []string{privPEM, otherPEM} {
			for _, line := range strings.Split(key, "\n") {
				if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(logs, line) {
					t.Errorf("a line of a private key is in the logs: %s", line)
				}
			}
		}
		if strings.Contains(logs, "PRIVATE KEY") {
			t.Error("PEM armour of a private key in the logs")
		}
	})
}

// TestMetricsOnTheirOwnAddress: with KEYSD_METRICS_ADDR, /metrics is served
// there, counting the API's requests, and the API address no longer has it.
func TestMetricsOnTheirOwnAddress(t *testing.T) {
	addr := freeAddr(t)
	k := MustStart(t, map[string]string{"KEYSD_METRICS_ADDR": addr})
	if r := k.Admin.Do(t, "GET", "/admin/keys", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", r.StatusCode, r.Body)
	}

	// Not on the API address: an unsigned GET /metrics is an unsigned
	// request for an account's resources there (401), a signed one a
	// missing resource.
	if code, body := plainGet(t, k.URL+"/metrics"); code == http.StatusOK || strings.Contains(string(body), "keysd_http_requests_total") {
		t.Errorf("GET /metrics on the API address: %d, still the metrics", code)
	}
	if r := k.Admin.Do(t, "GET", "/metrics", nil); r.StatusCode == http.StatusOK || strings.Contains(string(r.Body), "keysd_http_requests_total") {
		t.Errorf("signed GET /metrics on the API address: %d, still the metrics", r.StatusCode)
	}

	code, body := plainGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics on the metrics address: %d %s", code, body)
	}
	families := parseMetrics(t, body)
	if got, ok := metricValue(families, "keysd_http_requests_total", map[string]string{"method": "GET", "route": "/:login/keys", "code": "200"}); !ok || got < 1 {
		t.Errorf("keysd_http_requests_total of GET /:login/keys on the metrics address = %v (present %v), want >= 1", got, ok)
	}
	if code, _ := plainGet(t, "http://"+addr+"/admin/keys"); code != http.StatusNotFound {
		t.Errorf("GET /admin/keys on the metrics address: %d, want 404 (it serves /metrics alone)", code)
	}

	// It stops with keysd.
	k.Stop(t)
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the metrics address still accepts connections after keysd stopped")
	}
}

// TestReadyzWhileTheBusIsDown stops the external NATS server keysd uses:
// /readyz answers 503 naming the event log check, /healthz stays 200 (the
// process is alive; a supervisor must not restart it for that), API
// requests get 503 in the CloudAPI and LM error formats, and once the
// server is back on the same port and store /readyz is 200 again.
func TestReadyzWhileTheBusIsDown(t *testing.T) {
	// Mostly waiting (timeouts, expiries, AckWait): it runs beside the
	// other waiting tests once the rest of the package is done.
	t.Parallel()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	p, _ := strconv.Atoi(port)
	// The users of deploy/nats/auth.conf, as MustNATSServer has them:
	// MustStartExternal connects with keysd's seed.
	opts, err := server.ProcessConfigFile("../../deploy/nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", p, 0
	opts.JetStream, opts.StoreDir, opts.NoSigs, opts.NoLog = true, t.TempDir(), true, true
	opts.MaxPayload = bus.MaxPayload
	startNATS := func() *server.Server {
		t.Helper()
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats server not ready")
		}
		return ns
	}
	ns := startNATS()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	k := MustStartExternal(t, ns)
	alice := MustAccount(t, k, "alice")
	reader, _ := MustToken(t, k, "reader", "keys:read")

	type readiness struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	readyz := func() (int, readiness) {
		t.Helper()
		code, body := plainGet(t, k.URL+"/readyz")
		var r readiness
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("GET /readyz: %d %s: %v", code, body, err)
		}
		return code, r
	}
	var ready readiness
	eventually(t, 10*time.Second, "/readyz answers 200 with the bus up", func() bool {
		code, r := readyz()
		ready = r
		return code == http.StatusOK
	})
	if got, want := ready.Checks["eventLog"], "ok"; got != want {
		t.Fatalf("eventLog check with the bus up = %q, want %q", got, want)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	code, down := readyz()
	if code != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz with the bus down: %d %+v, want 503", code, down)
	}
	if got, want := down.Status, "unavailable"; got != want {
		t.Errorf("status with the bus down = %q, want %q", got, want)
	}
	if got := down.Checks["eventLog"]; got == "" || got == "ok" {
		t.Errorf("eventLog check with the bus down = %q, want the failure", got)
	}
	if !t.Failed() {
		t.Logf("with the bus down: %+v", down)
	}
	if code, body := plainGet(t, k.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz with the bus down: %d %s, want 200", code, body)
	}
	// API requests fail in each surface's own format, with 503: retry.
	// They give up after keysd's retry budget (10 s), not after every
	// retry's own timeout (33 s).
	start := time.Now()
	r := alice.Do(t, "GET", "/alice/keys", nil)
	if code, _ := r.ErrorBody(t); r.StatusCode != http.StatusServiceUnavailable || code != "ServiceUnavailable" || time.Since(start) > 15*time.Second {
		t.Errorf("CloudAPI ListKeys with the bus down: %d %s after %s, want 503 ServiceUnavailable within 15s", r.StatusCode, r.Body, time.Since(start))
	}
	// The revocation list too: never one that may miss a revocation.
	start = time.Now()
	r = k.Bearer("").Do(t, "GET", "/--krl", nil)
	if code, _ := r.ErrorBody(t); r.StatusCode != http.StatusServiceUnavailable || code != "ServiceUnavailable" || time.Since(start) > 15*time.Second {
		t.Errorf("GET /--krl with the bus down: %d %s after %s, want 503 ServiceUnavailable within 15s", r.StatusCode, r.Body, time.Since(start))
	}
	r = k.Bearer(reader).Do(t, "GET", "/api/resource-manager/infrastructure-keys/shared", nil)
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("LM list with the bus down: %d %s, want 503", r.StatusCode, r.Body)
	} else {
		r.LMError(t)
	}

	ns = startNATS()
	eventually(t, 30*time.Second, "/readyz answers 200 once the bus is back", func() bool {
		code, r := readyz()
		ready = r
		return code == http.StatusOK
	})
	for name, got := range ready.Checks {
		if got != "ok" {
			t.Errorf("check %s after the bus came back = %q, want ok", name, got)
		}
	}
}
