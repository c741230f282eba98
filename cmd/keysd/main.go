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
	"net"
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
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keysd:", err)
		}
		os.Exit(1)
	}
}

// run starts keysd and serves until ctx ends, then shuts down in order:
// stop accepting requests and finish those in flight, stop the consumers,
// drain the NATS connection, stop the embedded server.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)

	busCfg := bus.Config{URL: cfg.NATSURL, CredsFile: cfg.NATSCreds, Replicas: cfg.Replicas, Logger: logger.With("component", "nats")}
	if cfg.NATSURL == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
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
	accounts, err := projections.OpenAccounts(ctx, conn, eventLog, logger.With("component", "projections"))
	if err != nil {
		return err
	}
	infra, err := projections.OpenInfraKeys(ctx, conn, eventLog, logger.With("component", "projections"))
	if err != nil {
		return err
	}
	tokens, err := projections.OpenTokens(ctx, conn, eventLog, logger.With("component", "projections"))
	if err != nil {
		return err
	}
	cas, err := projections.OpenCAs(ctx, conn, eventLog, logger.With("component", "projections"))
	if err != nil {
		return err
	}
	projectionNames := []string{accounts.Name(), infra.Name(), tokens.Name(), cas.Name()}
	met := newMetrics(eventLog, intake, projectionNames, logger.With("component", "metrics"))
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

	intakeSvc := &domain.IntakeService{Repo: infra, Sealer: vault, AppendOnce: eventLog.AppendOnce, IntakeEvent: eventLog.IntakeEvent}

	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var workers sync.WaitGroup
	for _, p := range []interface {
		Name() string
		Run(context.Context) error
	}{accounts, infra, tokens, cas} {
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
		Rewrap:                func(ctx context.Context) (any, error) { return vault.Rewrap(ctx) },
		Repo:                  accounts,
		Projections:           []khttp.Rebuilder{accounts, infra, tokens, cas},
		Logger:                logger.With("component", "http"),
		AllowLegacySignatures: cfg.AllowLegacySignatures,
		ClockSkew:             cfg.ClockSkew,
		ReadyChecks:           readyChecks(eventLog, projectionNames),
		Observer:              met,
		Metrics:               apiMetrics,
	})
	l, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			l.Close()
			return fmt.Errorf("listen for metrics: %w", err)
		}
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
