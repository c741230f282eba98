package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	khttp "github.com/infrakeys/infrakeys/http"
	"github.com/infrakeys/infrakeys/metrics"
	"github.com/infrakeys/infrakeys/projections"
)

// readyMaxLag is how many events a projection may have left to apply and
// still count as caught up. Not zero: under a steady write load a
// projection that keeps up still has the last few events in flight, and a
// replica must not drop out of its load balancer for that. Reads stay
// correct while a projection lags (they read the log's tail); a projection
// far behind makes them slow, which is what this guards against.
const readyMaxLag = 1000

// readyChecks are the conditions of GET /readyz: the event log answers,
// and every projection's consumer runs and is caught up.
func readyChecks(log *bus.EventLog, names []string) []khttp.ReadyCheck {
	checks := []khttp.ReadyCheck{{Name: "eventLog", Check: func(ctx context.Context) error {
		if _, err := log.LastSeq(ctx); err != nil {
			return fmt.Errorf("event log unavailable: %v", err)
		}
		return nil
	}}}
	for _, name := range names {
		checks = append(checks, khttp.ReadyCheck{Name: "projection:" + name, Check: func(ctx context.Context) error {
			lag, err := projections.Lag(ctx, log, name)
			if err != nil {
				return err
			}
			if lag > readyMaxLag {
				return fmt.Errorf("%d events behind the log", lag)
			}
			return nil
		}})
	}
	return checks
}

// newMetrics registers keysd's metrics, with the probes read at each
// scrape.
func newMetrics(log *bus.EventLog, intake jetstream.Stream, names []string, krl *projections.Revocations, logger *slog.Logger) *metrics.Metrics {
	return metrics.New(metrics.Probes{
		LastSeq: log.LastSeq,
		EventLogSize: func(ctx context.Context) (uint64, uint64, error) {
			info, err := log.Stream().Info(ctx)
			if err != nil {
				return 0, 0, err
			}
			return info.State.Msgs, info.State.Bytes, nil
		},
		ProjectionLag: func(ctx context.Context) (map[string]uint64, error) {
			lags := make(map[string]uint64, len(names))
			for _, name := range names {
				lag, err := projections.Lag(ctx, log, name)
				if err != nil {
					return lags, err
				}
				lags[name] = lag
			}
			return lags, nil
		},
		CascadeBacklog:  func(ctx context.Context) (uint64, error) { return bus.CascadeBacklog(ctx, log) },
		ShredderBacklog: func(ctx context.Context) (uint64, error) { return bus.ShredderBacklog(ctx, log) },
		IntakeBacklog:   func(ctx context.Context) (uint64, error) { return bus.IntakeBacklog(ctx, intake) },
		// The list as a fetch would get it: brought up to the log first.
		KRL: func(ctx context.Context) (uint64, uint64, error) {
			k, err := krl.Current(ctx)
			return uint64(len(k.Data)), uint64(k.Entries), err
		},
	}, logger)
}

// serveMetrics answers GET /metrics, and nothing else, on l until ctx
// ends: the listener of --metrics-addr, for a scraper on a network the API
// is not on.
func serveMetrics(ctx context.Context, l net.Listener, h http.Handler, logger *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return khttp.ServeUntil(ctx, srv, l, 5*time.Second)
}
