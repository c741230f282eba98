package main

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// defaultConfig is the configuration with nothing set.
func defaultConfig() Config {
	return Config{DataDir: "./data", HTTPAddr: "127.0.0.1:8080", Replicas: 1, ClockSkew: 300 * time.Second, LogLevel: "info", CascadeBatch: domain.MaxCascadeBatch, LastUsePrecision: time.Hour}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want func(c *Config)
	}{
		{name: "Defaults", want: func(*Config) {}},
		{
			name: "EnvOnly",
			env: map[string]string{
				"KEYSD_DATA_DIR":                  "/var/lib/keysd",
				"KEYSD_HTTP_ADDR":                 ":9000",
				"KEYSD_METRICS_ADDR":              "127.0.0.1:9100",
				"KEYSD_NATS_URL":                  "nats://n1:4222",
				"KEYSD_NATS_CREDS":                "/etc/keysd/nats.creds",
				"KEYSD_REPLICAS":                  "3",
				"KEYSD_BOOTSTRAP_ACCOUNT":         "admin",
				"KEYSD_BOOTSTRAP_KEY":             "/etc/keysd/admin.pub",
				"KEYSD_ALLOW_LEGACY_SIGNATURES":   "true",
				"KEYSD_ATTESTATION_ROOTS":         "/etc/a.pem, /etc/b.pem,",
				"KEYSD_MASTER_KEY_FILE":           "/etc/keysd/master.key",
				"KEYSD_PREVIOUS_MASTER_KEY_FILES": "/etc/keysd/old.key",
				"KEYSD_CLOCK_SKEW":                "1m",
				"KEYSD_LOG_LEVEL":                 "debug",
				"KEYSD_CASCADE_BATCH":             "50",
				"KEYSD_LAST_USE_PRECISION":        "5m",
			},
			want: func(c *Config) {
				c.CascadeBatch, c.LastUsePrecision = 50, 5*time.Minute
				c.DataDir, c.HTTPAddr, c.MetricsAddr = "/var/lib/keysd", ":9000", "127.0.0.1:9100"
				c.NATSURL, c.NATSCreds, c.Replicas = "nats://n1:4222", "/etc/keysd/nats.creds", 3
				c.BootstrapAccount, c.BootstrapKey = "admin", "/etc/keysd/admin.pub"
				c.AllowLegacySignatures = true
				c.AttestationRoots = []string{"/etc/a.pem", "/etc/b.pem"}
				c.MasterKeyFile, c.PreviousMasterKeys = "/etc/keysd/master.key", []string{"/etc/keysd/old.key"}
				c.ClockSkew, c.LogLevel = time.Minute, "debug"
			},
		},
		{
			name: "FlagOverridesEnv",
			env: map[string]string{
				"KEYSD_HTTP_ADDR":                 ":9000",
				"KEYSD_LOG_LEVEL":                 "debug",
				"KEYSD_CLOCK_SKEW":                "1m",
				"KEYSD_ALLOW_LEGACY_SIGNATURES":   "true",
				"KEYSD_ATTESTATION_ROOTS":         "/etc/env.pem",
				"KEYSD_PREVIOUS_MASTER_KEY_FILES": "/etc/env.key",
			},
			args: []string{
				"--http-addr", "127.0.0.1:9001", "--log-level=warn", "--clock-skew", "2m", "--allow-legacy-signatures=false",
				"--attestation-roots", "/etc/a.pem,/etc/b.pem", "--attestation-roots", "/etc/c.pem",
				"--previous-master-key-files", "/etc/flag.key",
			},
			want: func(c *Config) {
				c.HTTPAddr, c.LogLevel, c.ClockSkew = "127.0.0.1:9001", "warn", 2*time.Minute
				c.AttestationRoots = []string{"/etc/a.pem", "/etc/b.pem", "/etc/c.pem"}
				c.PreviousMasterKeys = []string{"/etc/flag.key"}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, func(n string) string { return tc.env[n] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			want := defaultConfig()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("config =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseConfig_Errors(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string // each must be in the error
	}{
		{
			name: "ErrEnvValues",
			env:  map[string]string{"KEYSD_REPLICAS": "three", "KEYSD_CLOCK_SKEW": "5", "KEYSD_ALLOW_LEGACY_SIGNATURES": "maybe"},
			want: []string{"KEYSD_REPLICAS", "KEYSD_CLOCK_SKEW", "KEYSD_ALLOW_LEGACY_SIGNATURES"},
		},
		{
			name: "ErrSeveralAtOnce",
			env: map[string]string{
				"KEYSD_HTTP_ADDR":          "nowhere",
				"KEYSD_METRICS_ADDR":       "nowhere",
				"KEYSD_REPLICAS":           "9",
				"KEYSD_BOOTSTRAP_ACCOUNT":  "admin",
				"KEYSD_LOG_LEVEL":          "loud",
				"KEYSD_CASCADE_BATCH":      "0",
				"KEYSD_MASTER_KEY":         "k",
				"KEYSD_MASTER_KEY_FILE":    "f",
				"KEYSD_LAST_USE_PRECISION": "0s",
			},
			args: []string{"--clock-skew", "-1s"},
			want: []string{
				`http addr (--http-addr, KEYSD_HTTP_ADDR) "nowhere"`,
				`metrics addr (--metrics-addr, KEYSD_METRICS_ADDR) "nowhere"`,
				"replicas (--replicas, KEYSD_REPLICAS) must be 1 to 5, got 9",
				"replicas above 1 need a NATS cluster",
				"KEYSD_BOOTSTRAP_ACCOUNT and KEYSD_BOOTSTRAP_KEY must be set together",
				"set KEYSD_MASTER_KEY or KEYSD_MASTER_KEY_FILE, not both",
				"clock skew (--clock-skew, KEYSD_CLOCK_SKEW) must be positive",
				`log level (--log-level, KEYSD_LOG_LEVEL) must be debug, info, warn or error, got "loud"`,
				"cascade batch (--cascade-batch, KEYSD_CASCADE_BATCH) must be 1 to 1000, got 0",
				"last-use precision (--last-use-precision, KEYSD_LAST_USE_PRECISION) must be 1s to 24h, got 0s",
			},
		},
		{
			name: "ErrExternalNATS",
			env:  map[string]string{"KEYSD_NATS_URL": "nats://n1:4222", "KEYSD_NATS_LISTEN": "0.0.0.0:4222"},
			want: []string{"--nats-listen (KEYSD_NATS_LISTEN) is for the embedded server", "every replica needs the same master key"},
		},
		{name: "ErrNoDataDir", args: []string{"--data-dir", ""}, want: []string{"data dir (--data-dir, KEYSD_DATA_DIR) must be set"}},
		{name: "ErrUnknownFlag", args: []string{"--no-such-flag"}, want: []string{"no-such-flag"}},
		{name: "ErrArguments", args: []string{"serve"}, want: []string{"unexpected arguments: [serve]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, func(n string) string { return tc.env[n] }, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
		})
	}
}
