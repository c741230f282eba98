package projections

import (
	"context"
	"log/slog"

	"github.com/infrakeys/infrakeys/bus"
)

// Runner is a projection kept up to date from the log while keysd runs.
type Runner interface {
	Projection
	// Run applies the log's new events until ctx ends.
	Run(ctx context.Context) error
}

// Set is every read model keysd keeps. It is the one list that cmd/keysd
// opens, runs, reports on and offers operators to rebuild: a new
// projection is a file of this package plus a field and a line in Open
// (and its bucket's permissions in deploy/).
type Set struct {
	Accounts  *Accounts
	InfraKeys *InfraKeys
	Tokens    *Tokens
	CAs       *CAs
}

// Open opens every projection, rebuilding or re-checking each as it
// needs (OpenAccounts).
func Open(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*Set, error) {
	var (
		s   Set
		err error
	)
	if s.Accounts, err = OpenAccounts(ctx, c, log, logger); err != nil {
		return nil, err
	}
	if s.InfraKeys, err = OpenInfraKeys(ctx, c, log, logger); err != nil {
		return nil, err
	}
	if s.Tokens, err = OpenTokens(ctx, c, log, logger); err != nil {
		return nil, err
	}
	if s.CAs, err = OpenCAs(ctx, c, log, logger); err != nil {
		return nil, err
	}
	return &s, nil
}

// All returns every projection of the set.
func (s *Set) All() []Runner { return []Runner{s.Accounts, s.InfraKeys, s.Tokens, s.CAs} }

// Names returns the stable name of every projection of the set.
func (s *Set) Names() []string {
	var names []string
	for _, p := range s.All() {
		names = append(names, p.Name())
	}
	return names
}
