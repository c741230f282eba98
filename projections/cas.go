package projections

import (
	"context"
	"log/slog"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// CAsName is the stable name of the certificate authorities projection.
// Renaming it replays the whole log into a new read model.
const CAsName = "cas"

const casSchema = 1

// CAsBucket holds one document per certificate authority ("ca.<name>",
// private halves only sealed) and one per serial counter
// ("serials.<id>").
const CAsBucket = "KEYSD_CAS"

// CAs is the certificate authorities read model, and the domain's
// repository for CAs and certificate serial counters.
type CAs struct {
	kv      jetstream.KeyValue
	cas     *docStore[domain.CA]
	serials *docStore[domain.SerialCounter]
	log     *bus.EventLog
	logger  *slog.Logger
}

var (
	_ domain.CARepository     = (*CAs)(nil)
	_ domain.SerialRepository = (*CAs)(nil)
)

// OpenCAs opens the bucket, rebuilding or re-checking it if needed
// (OpenAccounts).
func OpenCAs(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*CAs, error) {
	kv, mayHaveLost, err := openBucket(ctx, c, CAsBucket, "infrakeys read model: certificate authorities (private halves sealed) and certificate serials")
	if err != nil {
		return nil, err
	}
	p := &CAs{kv: kv, log: log, logger: logger,
		cas: &docStore[domain.CA]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerCA, prefix: "ca.",
			apply:   domain.ApplyCAEvent,
			version: func(ca *domain.CA) uint64 { return ca.Version },
			clone:   func(ca *domain.CA) *domain.CA { c := *ca; c.Keys = slices.Clip(ca.Keys); return &c },
			cache:   newStateCache(casCacheBytes, func(ca *domain.CA) int { return structBytes + len(ca.Keys)*keyBytes }),
		},
		serials: &docStore[domain.SerialCounter]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerSerials, prefix: "serials.",
			apply:   domain.ApplySerialEvent,
			version: func(s *domain.SerialCounter) uint64 { return s.Version },
			clone:   func(s *domain.SerialCounter) *domain.SerialCounter { c := *s; return &c },
			cache:   newStateCache(casCacheBytes, func(*domain.SerialCounter) int { return structBytes }),
		},
	}
	if err := ensureBuilt(ctx, c, kv, mayHaveLost, p, casSchema, logger); err != nil {
		return nil, err
	}
	return p, nil
}

// casCacheBytes bounds the memory of the CA and serial states held: a
// handful of small states.
const casCacheBytes = 1 << 20

// Name implements Projection.
func (p *CAs) Name() string { return CAsName }

// Run keeps the read model up to date from the log until ctx ends.
func (p *CAs) Run(ctx context.Context) error {
	filters := []string{bus.KindSubjects(domain.OwnerCA), bus.KindSubjects(domain.OwnerSerials)}
	return runConsumer(ctx, p.log, p.logger, CAsName, filters, func(ctx context.Context, r bus.Recorded) error {
		switch r.Event.Owner.Kind {
		case domain.OwnerCA:
			return p.cas.handle(ctx, r)
		case domain.OwnerSerials:
			return p.serials.handle(ctx, r)
		}
		return nil
	})
}

// Rebuild recomputes every document from the whole log.
func (p *CAs) Rebuild(ctx context.Context) error {
	last1, err := p.cas.rebuild(ctx)
	if err != nil {
		return err
	}
	last2, err := p.serials.rebuild(ctx)
	if err != nil {
		return err
	}
	return writeMarker(ctx, p.kv, CAsName, casSchema, max(last1, last2))
}

// LoadCA implements domain.CARepository.
func (p *CAs) LoadCA(ctx context.Context, name string) (*domain.CA, error) {
	ca, err := p.cas.load(ctx, name)
	if err != nil || ca != nil {
		return ca, err
	}
	return &domain.CA{Name: name, Keys: []domain.CAKey{}}, nil
}

// AppendCA implements domain.CARepository.
func (p *CAs) AppendCA(ctx context.Context, name string, expected uint64, events []domain.Event) (*domain.CA, error) {
	return p.cas.append(ctx, name, expected, events)
}

// LoadSerials implements domain.SerialRepository.
func (p *CAs) LoadSerials(ctx context.Context) (*domain.SerialCounter, error) {
	s, err := p.serials.load(ctx, domain.SerialsSSH)
	if err != nil || s != nil {
		return s, err
	}
	return &domain.SerialCounter{Next: 1}, nil
}

// AppendSerials implements domain.SerialRepository.
func (p *CAs) AppendSerials(ctx context.Context, expected uint64, events []domain.Event) (*domain.SerialCounter, error) {
	return p.serials.append(ctx, domain.SerialsSSH, expected, events)
}
