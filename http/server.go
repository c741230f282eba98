// Package http serves the infrakeys APIs with Echo: the CloudAPI account
// keys surface (/:login/keys) and the operator endpoints. Handlers
// validate, run domain commands (which append events), and read the read
// models; they hold no state of their own.
package http

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// Rebuilder is a projection an operator can rebuild from the log.
type Rebuilder interface {
	Name() string
	Rebuild(ctx context.Context) error
}

// Config holds what the HTTP layer needs; cmd/keysd wires it.
type Config struct {
	Accounts  *domain.AccountService
	InfraKeys *domain.InfraKeyService
	Tokens    *domain.TokenService
	// Certificates is the SSH certificate authority.
	Certificates *domain.CertificateService
	Rewrap       RewrapFunc
	Repo         domain.AccountRepository
	Projections  []Rebuilder
	Logger       *slog.Logger

	// AllowLegacySignatures accepts rsa-sha1 and signatures that do not
	// cover (request-target), for old clients (triton-go). Off by default:
	// such signatures can be replayed against another path.
	AllowLegacySignatures bool
	// AttestationRoots are the roots hardware attestations must chain to.
	AttestationRoots *domain.AttestationRoots
	// ClockSkew is the largest accepted difference between a request's
	// signed date and now.
	ClockSkew time.Duration
	// Now is the clock; tests may replace it.
	Now func() time.Time
	// ReadyChecks must all pass for GET /readyz to answer 200 (bus
	// reachable, projections caught up); none means always ready.
	ReadyChecks []ReadyCheck
	// Observer learns of every request answered (metrics); optional.
	Observer RequestObserver
	// Metrics serves GET /metrics; nil leaves the route out.
	Metrics http.Handler
}

// ReadyCheck is one condition of readiness.
type ReadyCheck struct {
	// Name says what is checked, in the /readyz body ("eventLog",
	// "projection:accounts").
	Name string
	// Check returns nil when the condition holds, else why not. Its
	// message is shown to anyone who asks /readyz: no secrets in it.
	Check func(ctx context.Context) error
}

// RequestObserver learns of every request answered (metrics). route is
// the route's template ("/:login/keys"), "" when no route matched.
type RequestObserver interface {
	ObserveRequest(method, route string, status int, took time.Duration)
}

// Server is the HTTP server of keysd.
type Server struct {
	cfg  Config
	echo *echo.Echo
	log  *slog.Logger
	// verified remembers signatures that verified (see verified.go).
	verified verifiedSignatures
}

// NewServer builds the server and registers every route.
func NewServer(cfg Config) *Server {
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = 300 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AttestationRoots == nil {
		cfg.AttestationRoots = domain.DefaultAttestationRoots()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	s := &Server{cfg: cfg, echo: e, log: cfg.Logger}
	e.HTTPErrorHandler = s.handleError
	s.routes()
	return s
}

// Handler returns the server as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve answers requests on l until ctx ends, then stops accepting new
// connections and waits for in-flight requests to finish.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return ServeUntil(ctx, srv, l, 30*time.Second)
}

// ServeUntil runs srv on l until ctx ends, then shuts it down gracefully:
// it stops accepting connections and waits up to grace for the requests
// in flight.
func ServeUntil(ctx context.Context, srv *http.Server, l net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return err
}
