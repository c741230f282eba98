// Command keysd is the infrakeys service: the event log on NATS JetStream
// (embedded by default), its read models, and the HTTP APIs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	khttp "github.com/infrakeys/infrakeys/http"
	"github.com/infrakeys/infrakeys/projections"
	"github.com/infrakeys/infrakeys/sealing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Environ, os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		// The usage was asked for and printed: that is success.
	default:
		// run logged the error as JSON, like every other line, for log
		// pipelines; a person at a terminal also gets it plainly.
		if isTerminal(os.Stderr) {
			fmt.Fprintln(os.Stderr, "keysd:", err)
		}
		os.Exit(1)
	}
}

// run starts keysd and serves until ctx ends, then shuts down in order:
// stop accepting requests and finish those in flight, stop the consumers,
// drain the NATS connection, stop the embedded server. getenv reads the
// environment; environ lists it, to warn about KEYSD_* variables keysd
// does not read. An error that ends run is also logged, as JSON on stderr
// like every other line.
func run(ctx context.Context, args []string, getenv func(string) string, environ func() []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	// An invalid log level (one of the errors) logs at info.
	logger := newLogger(stderr, cfg.LogLevel)
	// Warned before a configuration error too: a misspelt name is often
	// its cause ("must be set together").
	warnUnknownVariables(logger, environ())
	if err == nil {
		err = serve(ctx, cfg, logger, stdout)
	}
	if err != nil {
		logger.Error("keysd stopped on an error", "err", err)
	}
	return err
}

// serve is run once the configuration is valid: it starts keysd and
// serves until ctx ends.
func serve(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	// Addresses are bound first: a busy port stops keysd before it has
	// touched the data directory. The lock comes next, before anything
	// in the directory is read or written.
	ls, err := listen(cfg)
	if err != nil {
		return err
	}
	defer ls.Close()
	busCfg := bus.Config{URL: cfg.NATSURL, CredsFile: cfg.NATSCreds, Replicas: cfg.Replicas, Logger: logger.With("component", "nats")}
	if cfg.NATSURL == "" {
		// Released last, after the deferred conn.Close below has stopped
		// the embedded server and recorded its clean stop.
		lock, err := lockDataDir(cfg.DataDir)
		if err != nil {
			return err
		}
		defer lock.Close()
		busCfg.StoreDir = filepath.Join(cfg.DataDir, "jetstream")
		if cfg.NATSListen != "" {
			access, created, err := bus.LoadAccess(filepath.Join(cfg.DataDir, "nats"))
			if err != nil {
				return err
			}
			for _, f := range created {
				fmt.Fprintf(stdout, "keysd: wrote NATS credentials %s (mode 0600)\n", f)
			}
			busCfg.Listen, busCfg.Access = cfg.NATSListen, access
		}
	}
	// The master key is loaded before anything touches NATS: without it
	// keysd cannot serve, and nothing should start half-way.
	ring, err := masterKeys(cfg, logger, stdout)
	if err != nil {
		return err
	}
	conn, err := bus.Connect(ctx, busCfg)
	if err != nil {
		return err
	}
	defer conn.Close()

	eventLog, err := bus.OpenEventLog(ctx, conn)
	if err != nil {
		return err
	}
	intake, err := bus.OpenIntake(ctx, conn)
	if err != nil {
		return err
	}
	models, err := projections.Open(ctx, conn, eventLog, logger.With("component", "projections"))
	if err != nil {
		return err
	}
	accounts, infra, tokens := models.Accounts, models.InfraKeys, models.Tokens
	cas := models.CAs
	projectionNames := models.Names()
	revocations := projections.NewRevocations(eventLog)
	met := newMetrics(eventLog, intake, projectionNames, revocations, logger.With("component", "metrics"))
	eventLog.Observe(met)
	dataKeys, err := bus.OpenDataKeys(ctx, conn)
	if err != nil {
		return err
	}
	vault := sealing.NewVault(ring, dataKeys)
	svc := &domain.AccountService{Repo: accounts}
	infraSvc := &domain.InfraKeyService{Repo: infra, Sealer: vault, CascadeBatch: cfg.CascadeBatch}
	tokenSvc := &domain.TokenService{Repo: tokens}
	certSvc := &domain.CertificateService{
		CAs: cas, Accounts: accounts, Instances: infra, Sealer: vault,
		Serials: &domain.Serials{Repo: cas}, Observer: met,
	}

	if cfg.BootstrapAccount != "" {
		if err := bootstrap(ctx, svc, cfg.BootstrapAccount, cfg.BootstrapKey); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		logger.Info("bootstrap operator account present", "login", cfg.BootstrapAccount)
	}

	intakeSvc := &domain.IntakeService{Repo: infra, Sealer: vault, AppendOnce: eventLog.AppendOnce, IntakeEvent: eventLog.IntakeEvent, SharedIntake: infra.SharedIntake}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var workers sync.WaitGroup
	uses, err := bus.OpenLastUse(workCtx, conn, cfg.LastUsePrecision, logger.With("component", "lastuse"))
	if err != nil {
		stopWork()
		return err
	}
	infraSvc.Uses = uses
	workers.Go(func() {
		if err := uses.Run(workCtx); err != nil {
			logger.Error("last use recording stopped", "err", err)
		}
	})
	for _, p := range models.All() {
		workers.Go(func() {
			if err := p.Run(workCtx); err != nil {
				logger.Error("projection stopped", "projection", p.Name(), "err", err)
			}
		})
	}
	workers.Go(func() {
		if err := bus.ServeIntake(workCtx, conn, intake, intakeSvc, met, logger.With("component", "intake")); err != nil {
			logger.Error("intake stopped", "err", err)
		}
	})
	workers.Go(func() {
		if err := bus.ServeCascade(workCtx, eventLog, infraSvc, met, logger.With("component", "cascade")); err != nil {
			logger.Error("cascade stopped", "err", err)
		}
	})
	expirySvc := &domain.ExpiryService{Accounts: accounts, InfraKeys: infra}
	workers.Go(func() {
		if err := bus.ServeExpirer(workCtx, eventLog, expirySvc, met, logger.With("component", "expirer")); err != nil {
			logger.Error("expirer stopped", "err", err)
		}
	})
	workers.Go(func() {
		if err := bus.ServeShredder(workCtx, eventLog, infraSvc, logger.With("component", "shredder")); err != nil {
			logger.Error("shredder stopped", "err", err)
		}
	})
	defer func() {
		stopWork()
		workers.Wait()
	}()
	// The request-reply responders are subscribed before keysd listens,
	// so that nothing sent after it reports ready meets "no responders".
	outcomes, err := bus.SubscribeOutcomes(workCtx, conn, intake, intakeSvc, logger.With("component", "intake"))
	if err != nil {
		return fmt.Errorf("intake outcome responder: %w", err)
	}
	defer drain(outcomes, logger)
	substitution, err := bus.SubscribeSubstitute(workCtx, conn, tokenSvc, infraSvc, logger.With("component", "rpc"))
	if err != nil {
		return fmt.Errorf("substitution responder: %w", err)
	}
	defer drain(substitution, logger)
	hostCerts, err := bus.SubscribeHostCertificates(workCtx, conn, tokenSvc, certSvc, logger.With("component", "rpc"))
	if err != nil {
		return fmt.Errorf("host certificate responder: %w", err)
	}
	defer drain(hostCerts, logger)

	roots, err := attestationRoots(cfg.AttestationRoots)
	if err != nil {
		return err
	}
	// /metrics is on the API address unless it has one of its own.
	var apiMetrics http.Handler = met.Handler()
	if cfg.MetricsAddr != "" {
		apiMetrics = nil
	}
	srv := khttp.NewServer(khttp.Config{
		AttestationRoots:      roots,
		Accounts:              svc,
		InfraKeys:             infraSvc,
		Tokens:                tokenSvc,
		Certificates:          certSvc,
		Revocations:           revocations,
		Rewrap:                func(ctx context.Context) (any, error) { return vault.Rewrap(ctx) },
		Repo:                  accounts,
		Projections:           rebuilders(models),
		Logger:                logger.With("component", "http"),
		AllowLegacySignatures: cfg.AllowLegacySignatures,
		ClockSkew:             cfg.ClockSkew,
		ReadyChecks:           readyChecks(eventLog, projectionNames),
		Observer:              met,
		Metrics:               apiMetrics,
		Uses:                  uses,
	})
	l := ls.http
	if ml := ls.metrics; ml != nil {
		logger.Info("metrics listening", "addr", ml.Addr().String())
		fmt.Fprintf(stdout, "keysd metrics on http://%s/metrics\n", ml.Addr())
		var served sync.WaitGroup
		defer served.Wait()
		served.Go(func() {
			if err := serveMetrics(ctx, ml, met.Handler(), logger); err != nil {
				logger.Error("metrics listener stopped", "err", err)
			}
		})
	}
	nats := "embedded (" + busCfg.StoreDir + ")"
	if cfg.NATSURL != "" {
		nats = cfg.NATSURL
	}
	if busCfg.Listen != "" {
		nats += "; drivers, manager, audit on nats://" + busCfg.Listen + " with NKeys in " + busCfg.Access.Dir
	}
	logger.Info("keysd listening", "addr", l.Addr().String(), "nats", nats)
	fmt.Fprintf(stdout, "keysd listening on http://%s\n", l.Addr())
	err = srv.Serve(ctx, l)
	logger.Info("keysd stopping")
	return err
}

// rebuilders returns every projection of models, for operators to rebuild.
func rebuilders(models *projections.Set) []khttp.Rebuilder {
	var out []khttp.Rebuilder
	for _, p := range models.All() {
		out = append(out, p)
	}
	return out
}

// bootstrap makes sure the operator account exists with the key in
// keyFile. Running it again with the same values changes nothing.
func bootstrap(ctx context.Context, svc *domain.AccountService, login, keyFile string) error {
	text, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	key, err := domain.ParsePublicKey(string(text))
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	_, err = svc.EnsureOperator(ctx, login, key, domain.Meta{Actor: "keysd-bootstrap"})
	return err
}

// masterKeys loads the master key (creating it on the embedded default's
// first start, never with an external NATS deployment) and any previous
// ones kept for rotation.
func masterKeys(cfg Config, logger *slog.Logger, stdout io.Writer) (*sealing.Keyring, error) {
	var current *sealing.MasterKey
	var err error
	switch {
	case cfg.MasterKey != "":
		if current, err = sealing.ParseMasterKey(cfg.MasterKey); err != nil {
			return nil, fmt.Errorf("KEYSD_MASTER_KEY: %w", err)
		}
	case cfg.NATSURL != "":
		// Every replica of an external deployment must share one master
		// key: a replica that made its own could not open the data keys
		// the others wrap, nor they its. So it is only ever loaded here.
		if current, err = sealing.LoadMasterKeyFile(cfg.MasterKeyFile); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("master key file %s does not exist; with an external NATS deployment (KEYSD_NATS_URL) keysd never creates one, because every replica must use the same key: create it once (keysctl master-key generate %s) and give that file to every replica", cfg.MasterKeyFile, cfg.MasterKeyFile)
		} else if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
	default:
		path := cfg.MasterKeyFile
		if path == "" {
			path = filepath.Join(cfg.DataDir, "master.key")
		}
		var created bool
		if current, created, err = sealing.LoadOrCreateMasterKeyFile(path); err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		if created {
			logger.Warn("generated a new master key; back it up: without it no sealed private key can be read", "path", path, "masterKey", current)
			fmt.Fprintf(stdout, "keysd: generated master key %s (mode 0600); back it up\n", path)
		}
	}
	var older []*sealing.MasterKey
	for _, f := range cfg.PreviousMasterKeys {
		m, err := sealing.LoadMasterKeyFile(f)
		if err != nil {
			return nil, fmt.Errorf("previous master key: %w", err)
		}
		older = append(older, m)
	}
	logger.Info("master key loaded", "masterKey", current, "previous", len(older))
	return sealing.NewKeyring(current, older...), nil
}

// attestationRoots returns the bundled Yubico PIV root plus the roots in
// files.
func attestationRoots(files []string) (*domain.AttestationRoots, error) {
	roots := domain.DefaultAttestationRoots()
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("attestation roots: %w", err)
		}
		if err := roots.AddPEM(data); err != nil {
			return nil, fmt.Errorf("attestation roots %s: %w", f, err)
		}
	}
	return roots, nil
}

// isTerminal reports whether f is a terminal (a character device), where
// a person rather than a log pipeline reads.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// drain stops a responder, letting requests it took finish.
func drain(sub *nats.Subscription, logger *slog.Logger) {
	if err := sub.Drain(); err != nil {
		logger.Warn("draining a responder", "subject", sub.Subject, "err", err)
	}
}
