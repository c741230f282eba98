package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// Config is everything keysd can be told. Flags and environment variables
// map onto it; defaults are set in one place (setDefaults).
type Config struct {
	DataDir               string
	HTTPAddr              string
	MetricsAddr           string
	NATSURL               string
	NATSCreds             string
	NATSListen            string
	Replicas              int
	BootstrapAccount      string
	BootstrapKey          string
	AllowLegacySignatures bool
	AttestationRoots      []string
	MasterKeyFile         string
	MasterKey             string
	PreviousMasterKeys    []string
	ClockSkew             time.Duration
	LogLevel              string
	// CascadeBatch is a tuning and test knob: how many KeyDeleted events
	// the cascade appends at once.
	CascadeBatch int
	// LastUsePrecision is how coarse the last use of keys is: a key's
	// time is written at most once per precision.
	LastUsePrecision time.Duration
}

func (c *Config) setDefaults() {
	c.DataDir = "./data"
	c.HTTPAddr = "127.0.0.1:8080"
	c.Replicas = 1
	c.ClockSkew = 300 * time.Second
	c.LogLevel = "info"
	c.CascadeBatch = domain.MaxCascadeBatch
	c.LastUsePrecision = bus.DefaultLastUsePrecision
}

// Validate returns every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.NATSURL == "" && c.DataDir == "" {
		errs = append(errs, errors.New("data dir (--data-dir, KEYSD_DATA_DIR) must be set when NATS is embedded"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http addr (--http-addr, KEYSD_HTTP_ADDR) %q: %v", c.HTTPAddr, err))
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics addr (--metrics-addr, KEYSD_METRICS_ADDR) %q: %v", c.MetricsAddr, err))
		}
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas (--replicas, KEYSD_REPLICAS) must be 1 to 5, got %d", c.Replicas))
	}
	if c.NATSURL == "" && c.Replicas != 1 {
		errs = append(errs, errors.New("replicas above 1 need a NATS cluster (KEYSD_NATS_URL)"))
	}
	if c.NATSListen != "" {
		if c.NATSURL != "" {
			errs = append(errs, errors.New("--nats-listen (KEYSD_NATS_LISTEN) is for the embedded server; with KEYSD_NATS_URL configure the cluster's listeners and users (deploy/nats)"))
		} else if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			errs = append(errs, fmt.Errorf("nats listen (--nats-listen, KEYSD_NATS_LISTEN) %q: %v", c.NATSListen, err))
		}
	}
	if (c.BootstrapAccount == "") != (c.BootstrapKey == "") {
		errs = append(errs, errors.New("KEYSD_BOOTSTRAP_ACCOUNT and KEYSD_BOOTSTRAP_KEY must be set together"))
	}
	if c.MasterKey != "" && c.MasterKeyFile != "" {
		errs = append(errs, errors.New("set KEYSD_MASTER_KEY or KEYSD_MASTER_KEY_FILE, not both"))
	}
	if c.NATSURL != "" && c.MasterKey == "" && c.MasterKeyFile == "" {
		errs = append(errs, errors.New("with an external NATS deployment every replica needs the same master key: set KEYSD_MASTER_KEY_FILE or KEYSD_MASTER_KEY"))
	}
	if c.CascadeBatch < 1 || c.CascadeBatch > domain.MaxCascadeBatch {
		errs = append(errs, fmt.Errorf("cascade batch (--cascade-batch, KEYSD_CASCADE_BATCH) must be 1 to %d, got %d", domain.MaxCascadeBatch, c.CascadeBatch))
	}
	if c.LastUsePrecision < time.Second || c.LastUsePrecision > 24*time.Hour {
		errs = append(errs, fmt.Errorf("last-use precision (--last-use-precision, KEYSD_LAST_USE_PRECISION) must be 1s to 24h, got %s", c.LastUsePrecision))
	}
	if c.ClockSkew <= 0 {
		errs = append(errs, errors.New("clock skew (--clock-skew, KEYSD_CLOCK_SKEW) must be positive"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log level (--log-level, KEYSD_LOG_LEVEL) must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

// parseConfig reads the environment, then the flags, which win.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	c.setDefaults()
	var errs []error
	for _, v := range envVars(&c) {
		if value := getenv(v.name); value != "" {
			if err := v.set(value); err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", v.name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}

	fs := flag.NewFlagSet("keysd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of keysd's files with the embedded NATS server (its store, the master key, NKeys), locked while keysd runs (KEYSD_DATA_DIR)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "address the HTTP API listens on (KEYSD_HTTP_ADDR)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "address serving GET /metrics alone, which the HTTP API then leaves out; empty: the API serves it (KEYSD_METRICS_ADDR)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "external NATS deployment; empty embeds a server (KEYSD_NATS_URL)")
	fs.StringVar(&c.NATSCreds, "nats-creds", c.NATSCreds, "credentials for the external NATS deployment: a .creds file or an NKey seed file (KEYSD_NATS_CREDS)")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "host:port where the embedded NATS server accepts drivers, the resource manager and audit consumers, with NKeys written under <data-dir>/nats; empty: none (KEYSD_NATS_LISTEN)")
	fs.IntVar(&c.Replicas, "replicas", c.Replicas, "replicas of the stream and buckets; 3 on a cluster (KEYSD_REPLICAS)")
	fs.StringVar(&c.BootstrapAccount, "bootstrap-account", c.BootstrapAccount, "operator account to ensure at start-up (KEYSD_BOOTSTRAP_ACCOUNT)")
	fs.StringVar(&c.BootstrapKey, "bootstrap-key", c.BootstrapKey, "OpenSSH public key file of the bootstrap account (KEYSD_BOOTSTRAP_KEY)")
	fs.BoolVar(&c.AllowLegacySignatures, "allow-legacy-signatures", c.AllowLegacySignatures, "accept rsa-sha1 and signatures without (request-target) (KEYSD_ALLOW_LEGACY_SIGNATURES)")
	fs.StringVar(&c.MasterKeyFile, "master-key-file", c.MasterKeyFile, "master key sealing private keys; created on first start if missing, with the embedded NATS only (KEYSD_MASTER_KEY_FILE, default <data-dir>/master.key)")
	fs.Func("previous-master-key-files", "comma-separated older master key files, kept only to open and re-wrap during rotation; may be repeated (KEYSD_PREVIOUS_MASTER_KEY_FILES)", listFlag(&c.PreviousMasterKeys))
	fs.Func("attestation-roots", "comma-separated PEM files of extra hardware attestation roots; may be repeated (KEYSD_ATTESTATION_ROOTS)", listFlag(&c.AttestationRoots))
	fs.DurationVar(&c.ClockSkew, "clock-skew", c.ClockSkew, "largest accepted difference between a signed Date and now (KEYSD_CLOCK_SKEW)")
	fs.IntVar(&c.CascadeBatch, "cascade-batch", c.CascadeBatch, "KeyDeleted events the InstanceRemoved cascade appends at once, 1 to 1000; a tuning and test knob (KEYSD_CASCADE_BATCH)")
	fs.DurationVar(&c.LastUsePrecision, "last-use-precision", c.LastUsePrecision, "how coarse the last use of keys is, 1s to 24h: a key's time is written at most once per this (KEYSD_LAST_USE_PRECISION)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (KEYSD_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, c.Validate()
}

// envVar is an environment variable keysd reads and how it sets c.
type envVar struct {
	name string
	set  func(string) error
}

// envVars lists every environment variable keysd reads, each bound to
// the field of c it sets: the one list that both parseConfig and the
// warning about unknown KEYSD_* variables (environ.go) go by.
func envVars(c *Config) []envVar {
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	return []envVar{
		{"KEYSD_DATA_DIR", str(&c.DataDir)},
		{"KEYSD_HTTP_ADDR", str(&c.HTTPAddr)},
		{"KEYSD_METRICS_ADDR", str(&c.MetricsAddr)},
		{"KEYSD_NATS_URL", str(&c.NATSURL)},
		{"KEYSD_NATS_CREDS", str(&c.NATSCreds)},
		{"KEYSD_NATS_LISTEN", str(&c.NATSListen)},
		{"KEYSD_BOOTSTRAP_ACCOUNT", str(&c.BootstrapAccount)},
		{"KEYSD_BOOTSTRAP_KEY", str(&c.BootstrapKey)},
		{"KEYSD_LOG_LEVEL", str(&c.LogLevel)},
		{"KEYSD_MASTER_KEY_FILE", str(&c.MasterKeyFile)},
		{"KEYSD_MASTER_KEY", str(&c.MasterKey)},
		{"KEYSD_PREVIOUS_MASTER_KEY_FILES", func(v string) error { c.PreviousMasterKeys = splitList(v); return nil }},
		{"KEYSD_ATTESTATION_ROOTS", func(v string) error { c.AttestationRoots = splitList(v); return nil }},
		{"KEYSD_REPLICAS", func(v string) (err error) { c.Replicas, err = strconv.Atoi(v); return }},
		{"KEYSD_ALLOW_LEGACY_SIGNATURES", func(v string) (err error) { c.AllowLegacySignatures, err = strconv.ParseBool(v); return }},
		{"KEYSD_CASCADE_BATCH", func(v string) (err error) { c.CascadeBatch, err = strconv.Atoi(v); return }},
		{"KEYSD_CLOCK_SKEW", func(v string) (err error) { c.ClockSkew, err = time.ParseDuration(v); return }},
		{"KEYSD_LAST_USE_PRECISION", func(v string) (err error) { c.LastUsePrecision, err = time.ParseDuration(v); return }},
	}
}

// listFlag sets a list from a flag that may be repeated: the flag's items
// add up, and replace what the environment set, since flags win.
func listFlag(list *[]string) func(string) error {
	fromFlags := false
	return func(v string) error {
		if !fromFlags {
			*list, fromFlags = nil, true
		}
		*list = append(*list, splitList(v)...)
		return nil
	}
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
