// Package bus speaks NATS JetStream for infrakeys: the embedded server, the
// connection, the event stream with optimistic concurrency, and the
// consumers that read it.
package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config says how to reach NATS.
type Config struct {
	// URL of an external NATS deployment; empty embeds a server.
	URL string
	// CredsFile authenticates to the external deployment (optional): a
	// NATS credentials file (user JWT and seed, for operator-mode
	// deployments) or an NKey seed file (for servers that list NKey users
	// in their configuration, as deploy/nats does).
	CredsFile string
	// StoreDir is where the embedded server keeps JetStream files.
	StoreDir string
	// Replicas for the stream and buckets (1 embedded, 3 on a cluster).
	Replicas int
	// Name identifies this connection in NATS monitoring.
	Name string
	// Listen is the address where the embedded server accepts drivers,
	// the resource manager and audit consumers ("host:port"); empty
	// accepts no network connection at all.
	Listen string
	// Access authenticates those connections; required with Listen.
	Access *Access
	// Logger receives the embedded server's log lines.
	Logger *slog.Logger
}

// Conn is a connection to NATS with JetStream, and the embedded server when
// there is one.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Replicas int
	server   *server.Server
	storeDir string
	logger   *slog.Logger
	// stoppedCleanly: the embedded server's store was last stopped by
	// Close, every write on disk (see cleanstop.go).
	stoppedCleanly bool
	// rechecked names the streams flushed asynchronously that were
	// checked against the log in this run (Rechecked).
	mu        sync.Mutex
	rechecked map[string]bool
	// markOnStop: the stop may be recorded as clean (Close).
	markOnStop bool
}

// Connect embeds a server (cfg.URL empty) or dials cfg.URL, and returns a
// JetStream-ready connection.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Name == "" {
		cfg.Name = "keysd"
	}
	c := &Conn{Replicas: cfg.Replicas}
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if cfg.Logger != nil {
		// Asynchronous errors (a watch whose consumer the server lost,
		// a slow consumer) go to keysd's JSON log: nats.go's default
		// prints them to stderr as plain text.
		logger := cfg.Logger
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Warn("nats: asynchronous error", "subject", subject, "err", err.Error())
		}))
	}
	url := cfg.URL
	if url == "" {
		clean, err := takeCleanStop(cfg.StoreDir)
		if err != nil {
			return nil, err
		}
		ns, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		c.server, c.storeDir, c.logger, c.stoppedCleanly = ns, cfg.StoreDir, cfg.Logger, clean
		opts = append(opts, nats.InProcessServer(ns))
		if cfg.Access != nil {
			opts = append(opts, cfg.Access.serviceOption())
		}
	} else if cfg.CredsFile != "" {
		auth, err := credentials(cfg.CredsFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, auth)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.shutdownServer()
		return nil, fmt.Errorf("bus: connect to NATS: %w", err)
	}
	c.NC = nc
	if c.JS, err = jetstream.New(nc); err != nil {
		c.Close()
		return nil, fmt.Errorf("bus: JetStream: %w", err)
	}
	return c, nil
}

// credentials returns the authentication option for file: a user JWT
// with its seed when the file holds a JWT, else the NKey of the seed alone.
func credentials(file string) (nats.Option, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("bus: NATS credentials: %w", err)
	}
	isJWT := bytes.Contains(data, []byte("BEGIN NATS USER JWT"))
	clear(data)
	if isJWT {
		return nats.UserCredentials(file), nil
	}
	auth, err := nats.NkeyOptionFromSeed(file)
	if err != nil {
		return nil, fmt.Errorf("bus: NATS credentials %s: neither a credentials file nor an NKey seed: %w", file, err)
	}
	return auth, nil
}

// Embedded reports whether this connection runs its own server.
func (c *Conn) Embedded() bool { return c.server != nil }

// Server returns the embedded server, or nil.
func (c *Conn) Server() *server.Server { return c.server }

// StoppedCleanly reports whether the embedded server's store was last
// stopped by Close with every write on disk. False for an external server,
// a new store, and after a crash: then writes to streams whose writes are
// flushed asynchronously (the read models' buckets) may have been lost.
func (c *Conn) StoppedCleanly() bool { return c.stoppedCleanly }

// Rechecked records that stream, one whose writes are flushed
// asynchronously, was checked against the log in this run (a read model
// rebuilt or re-checked at start-up): what an earlier crash lost from it
// is back.
func (c *Conn) Rechecked(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rechecked == nil {
		c.rechecked = map[string]bool{}
	}
	c.rechecked[stream] = true
}

// consistentForStop reports whether this run may record a clean stop: the
// last one was clean, or every stream flushed asynchronously was checked
// against the log since. Otherwise a run that did not check them (a tool
// opening the data directory, a keysd whose start-up failed) would hide
// an earlier crash's losses from the next start.
func (c *Conn) consistentForStop() bool {
	if c.stoppedCleanly {
		return true
	}
	if c.JS == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	streams := c.JS.ListStreams(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	for info := range streams.Info() {
		if info.Config.PersistMode == jetstream.AsyncPersistMode && !c.rechecked[info.Config.Name] {
			return false
		}
	}
	return streams.Err() == nil
}

// Close drains the connection, so acknowledged work is flushed, then stops
// the embedded server cleanly and records that it did, if the read models
// are known to be whole (consistentForStop).
func (c *Conn) Close() {
	if c.server != nil {
		c.markOnStop = c.consistentForStop()
	}
	if c.NC != nil {
		done := make(chan struct{})
		c.NC.SetClosedHandler(func(*nats.Conn) { close(done) })
		if err := c.NC.Drain(); err == nil {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
		}
		c.NC.Close()
	}
	c.shutdownServer()
}

func (c *Conn) shutdownServer() {
	if c.server == nil {
		return
	}
	c.server.Shutdown()
	c.server.WaitForShutdown()
	if !c.markOnStop {
		return
	}
	if err := markCleanStop(c.storeDir); err != nil && c.logger != nil {
		c.logger.Warn("could not record the clean stop; the next start re-checks the read models", "err", err)
	}
}

// MaxPayload is the largest message the embedded server takes (NATS's
// default is 1 MB). A read model of one owner is one KV value: an
// instance with a thousand keys and their sealed private halves is about
// 1 MB. External deployments set max_payload to the same (deploy/nats).
const MaxPayload = 8 << 20

// StartEmbedded starts an in-process JetStream server that stores under dir
// and accepts no network connections. Every write is fsynced before it is
// acknowledged (SyncAlways): NATS's default syncs every two minutes, and an
// OS crash in between loses acknowledged writes (docs/operations.md,
// "Durability").
func StartEmbedded(dir string, logger *slog.Logger) (*server.Server, error) {
	return startEmbedded(Config{StoreDir: dir, Logger: logger})
}

// startEmbedded starts the embedded server of cfg: with cfg.Listen, it
// also accepts authenticated network connections there.
func startEmbedded(cfg Config) (*server.Server, error) {
	dir, logger := cfg.StoreDir, cfg.Logger
	if dir == "" {
		return nil, errors.New("bus: embedded server needs a store directory")
	}
	opts := &server.Options{
		ServerName: "keysd-embedded",
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: true,
		DontListen: true,
		NoSigs:     true,
		MaxPayload: MaxPayload,
	}
	if cfg.Listen != "" {
		if cfg.Access == nil {
			return nil, errors.New("bus: an embedded server that listens needs credentials")
		}
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("bus: listen address %q: %w", cfg.Listen, err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("bus: listen address %q: bad port", cfg.Listen)
		}
		opts.Host, opts.DontListen = host, false
		opts.Nkeys = cfg.Access.users
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	if logger != nil {
		ns.SetLoggerV2(&serverLog{logger}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded server not ready after 30s")
	}
	return ns, nil
}

// serverLog adapts the server's logger to slog.
type serverLog struct{ l *slog.Logger }

func (s *serverLog) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s *serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s *serverLog) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s *serverLog) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s *serverLog) Tracef(format string, v ...any)  {}

// withTimeout bounds one JetStream call: on a fresh cluster without a
// leader a call can otherwise hang until the caller's deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 5*time.Second)
}
