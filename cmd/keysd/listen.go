package main

import (
	"fmt"
	"net"
)

// listeners are keysd's network addresses, bound before anything else
// starts: a busy port is found in a moment, with nothing in the data
// directory changed, instead of after the embedded server, the master
// key and the read models, behind their log lines.
type listeners struct {
	http    net.Listener
	metrics net.Listener // nil without --metrics-addr
}

// listen binds cfg's HTTP and metrics addresses and makes sure the
// embedded NATS server's listen address is free. Each error names the
// address and the setting it came from.
func listen(cfg Config) (*listeners, error) {
	var ls listeners
	var err error
	if ls.http, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("http addr (--http-addr, KEYSD_HTTP_ADDR): %w", err)
	}
	if cfg.MetricsAddr != "" {
		if ls.metrics, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ls.Close()
			return nil, fmt.Errorf("metrics addr (--metrics-addr, KEYSD_METRICS_ADDR): %w", err)
		}
	}
	if cfg.NATSListen != "" {
		// nats-server binds its client port itself, in its accept loop,
		// which runs after JetStream has opened its store; it takes no
		// listener bound beforehand (server.Options has no field for one,
		// and the server's own is unexported). So the address is probed:
		// bound and let go at once. Another process may still take it in
		// the moments before the server binds it; then the embedded
		// server's start fails instead, later, but on what is the rare
		// race rather than the common mistake.
		probe, err := net.Listen("tcp", cfg.NATSListen)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("nats listen (--nats-listen, KEYSD_NATS_LISTEN): %w", err)
		}
		probe.Close()
	}
	return &ls, nil
}

// Close closes every listener. A listener already closed by the server
// that served it is no harm.
func (ls *listeners) Close() {
	if ls.http != nil {
		ls.http.Close()
	}
	if ls.metrics != nil {
		ls.metrics.Close()
	}
}
