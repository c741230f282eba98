// Command bench measures keysd against the limits of what it stands on,
// side by side in one run on one machine, and prints a table of ratios
// with p50/p99 latencies (docs/BENCHMARKS.md holds the results):
//
//  1. authenticated GetKey and ListKeys vs a no-op Echo handler, both
//     driven by the same load generator (vegeta) with the same signing;
//  2. CreateKey (read-your-writes) vs raw JetStream publishes of the same
//     size, the same durability (SyncAlways) and the same concurrency;
//  3. projection rebuild speed from the log, into an empty bucket (and a
//     re-check of an up-to-date one);
//  4. the cascade: InstanceRemoved to the last of N instance keys gone;
//  5. resident memory and start-up time of a keysd holding many keys.
//
// keysd runs as a real process (built from ./cmd/keysd); so does the
// no-op server (this binary, re-executed).
//
//	go run ./bench                     # the full run, a few minutes
//	go run ./bench -duration 2s -keys 2000 -cascade-keys 100   # a quick look
//	go run ./bench -phases rebuild     # one phase
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == noopCommand {
		if err := serveNoop(ctx, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench noop:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(1)
	}
}

// Config is what one run measures and how hard.
type Config struct {
	// Keysd is the keysd binary; empty builds ./cmd/keysd.
	Keysd string
	// Self is this program's binary, re-executed as the no-op server;
	// empty means os.Executable.
	Self string
	// WorkDir holds the data directories; empty makes a temporary one.
	WorkDir string
	// Duration of each load phase.
	Duration time.Duration
	// Concurrency of each load phase: requests (or publishes) in flight.
	Concurrency int
	// Keys held by keysd for the memory and start-up phase, and replayed
	// by the rebuild phase, in accounts of KeysPerAccount keys.
	Keys           int
	KeysPerAccount int
	// CascadeKeys are the keys of the instance removed in the cascade
	// phase.
	CascadeKeys int
	// IntakeKeys are the keys the intake phase gives one instance.
	IntakeKeys int
	// Settle is how long after reading every account the store phase
	// measures memory again.
	Settle time.Duration
	// SharedKeys are the shared keys the list phase lists.
	SharedKeys int
	// Phases to run, of allPhases.
	Phases []string
	// RebuildProfile, when set, receives the CPU profile of the rebuild
	// into an empty bucket.
	RebuildProfile string
}

// allPhases are the phases, in the order they run.
var allPhases = []string{"api", "store", "rebuild", "cascade", "intake", "list"}

func (c *Config) setDefaults() {
	c.Duration = 10 * time.Second
	c.Concurrency = 16
	c.Keys = 100_000
	c.KeysPerAccount = 10
	c.CascadeKeys = 10000
	c.IntakeKeys = 10_000
	c.Settle = 30 * time.Second
	c.SharedKeys = 10_000
	c.Phases = allPhases
}

// Validate returns every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.Duration <= 0 {
		errs = append(errs, errors.New("-duration must be positive"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("-concurrency must be at least 1"))
	}
	if c.Keys < 1 || c.KeysPerAccount < 1 || c.KeysPerAccount > 999 {
		errs = append(errs, errors.New("-keys must be at least 1 and -keys-per-account 1 to 999 (one atomic batch per account)"))
	}
	for _, p := range c.Phases {
		if !slices.Contains(allPhases, p) {
			errs = append(errs, fmt.Errorf("-phases: unknown phase %q (%s)", p, strings.Join(allPhases, ", ")))
		}
	}
	if c.CascadeKeys < 1 {
		errs = append(errs, errors.New("-cascade-keys must be at least 1"))
	}
	if c.IntakeKeys < 1 {
		errs = append(errs, errors.New("-intake-keys must be at least 1"))
	}
	if c.SharedKeys < 1 {
		errs = append(errs, errors.New("-shared-keys must be at least 1"))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg Config
	cfg.setDefaults()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Keysd, "keysd", "", "keysd binary (default: build ./cmd/keysd)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "where data directories go (default: a temporary directory, removed after)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of each load phase")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests or publishes in flight in each load phase")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys keysd holds in the store phase, and the rebuild phase replays")
	fs.IntVar(&cfg.KeysPerAccount, "keys-per-account", cfg.KeysPerAccount, "keys per account in those phases")
	fs.IntVar(&cfg.CascadeKeys, "cascade-keys", cfg.CascadeKeys, "keys of the instance removed in the cascade phase")
	fs.IntVar(&cfg.IntakeKeys, "intake-keys", cfg.IntakeKeys, "keys the intake phase gives one instance, 100 at a time")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "how long after reading every account the store phase measures memory again (past the embedded server's 10 s block cache expiry)")
	fs.IntVar(&cfg.SharedKeys, "shared-keys", cfg.SharedKeys, "shared keys the list phase lists")
	fs.StringVar(&cfg.RebuildProfile, "rebuild-cpuprofile", "", "write the CPU profile of the rebuild into an empty bucket to this file")
	fs.Func("phases", "comma-separated phases to run: api (reads, writes), store (memory, start-up), rebuild (projection rebuild), cascade, intake (per-key cost in one instance), list (shared keys) (default: all)", func(v string) error {
		cfg.Phases = strings.Split(v, ",")
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	b, err := newBench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	rep := b.run(ctx)
	rep.print(stdout)
	return rep.err()
}
