package projections

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// InfraKeysName is the stable name of the infrastructure keys projection.
// Renaming it replays the whole log into a new read model.
const InfraKeysName = "infrakeys"

// infraKeysSchema is the bucket's layout version. 3: instances are kept
// per key (instanceLayout) instead of one document each, and intake
// records keep the key's name, scope and fingerprint. An older bucket is
// rebuilt at start-up.
const infraKeysSchema = 3

// Memory bounds of the states held (stateCache): shared keys are one key
// each (about 6,000 with sealed private halves); an instance holds all its
// keys, so its budget takes an instance of 10,000 keys with a few more.
const (
	sharedCacheBytes    = 16 << 20
	instancesCacheBytes = 64 << 20
)

// InfraKeysBucket holds one document per shared key name ("shared.<name>")
// and, per resource instance, a head ("instance.<id>") and one entry per
// key and per driver message (instanceLayout). Private halves appear in it
// only sealed.
const InfraKeysBucket = "KEYSD_INFRAKEYS"

// InfraKeys is the infrastructure keys read model and the domain's
// repository for shared keys and instances.
type InfraKeys struct {
	kv        jetstream.KeyValue
	shared    *docStore[domain.SharedKey]
	instances *docStore[domain.Instance] // kept per key: layout
	layout    *instanceLayout
	// sharedIndex lists shared keys.
	sharedIndex *kindIndex[domain.SharedKey]
	log         *bus.EventLog
	logger      *slog.Logger
}

var _ domain.InfraKeyRepository = (*InfraKeys)(nil)

// OpenInfraKeys opens the bucket, rebuilding it from the log if it is new,
// wiped, or of an older layout, and re-checking it after a crash of the
// embedded server.
func OpenInfraKeys(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*InfraKeys, error) {
	kv, mayHaveLost, err := openBucket(ctx, c, InfraKeysBucket, "infrakeys read model: shared and instance infrastructure keys (private halves sealed)")
	if err != nil {
		return nil, err
	}
	layout := &instanceLayout{kv: kv, log: log}
	p := &InfraKeys{kv: kv, log: log, logger: logger, layout: layout,
		sharedIndex: &kindIndex[domain.SharedKey]{log: log, kind: domain.OwnerShared, apply: domain.ApplySharedKeyEvent},
		shared: &docStore[domain.SharedKey]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerShared, prefix: "shared.",
			apply:   domain.ApplySharedKeyEvent,
			version: func(s *domain.SharedKey) uint64 { return s.Version },
			clone:   cloneSharedKey,
			cache:   newStateCache(sharedCacheBytes, sharedKeySize),
		},
		instances: &docStore[domain.Instance]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerInstance, prefix: "instance.",
			apply:       domain.ApplyInstanceEvent,
			version:     func(in *domain.Instance) uint64 { return in.Version },
			clone:       cloneInstance,
			extend:      extendInstance,
			advanceMany: advanceInstance,
			cache:       newStateCache(instancesCacheBytes, instanceSize),
			stored:      layout.read,
		},
	}
	if err := ensureBuilt(ctx, c, kv, mayHaveLost, p, infraKeysSchema, logger); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements Projection.
func (p *InfraKeys) Name() string { return InfraKeysName }

// Run keeps the read model up to date from the log until ctx ends.
func (p *InfraKeys) Run(ctx context.Context) error {
	filters := []string{bus.KindSubjects(domain.OwnerShared), bus.KindSubjects(domain.OwnerInstance)}
	return runConsumer(ctx, p.log, p.logger, InfraKeysName, filters, func(ctx context.Context, r bus.Recorded) error {
		switch r.Event.Owner.Kind {
		case domain.OwnerShared:
			return p.shared.handle(ctx, r)
		case domain.OwnerInstance:
			return p.layout.handle(ctx, r)
		}
		return nil
	})
}

// Rebuild recomputes every document from the whole log.
func (p *InfraKeys) Rebuild(ctx context.Context) error {
	last1, err := p.shared.rebuild(ctx)
	if err != nil {
		return err
	}
	last2, err := p.layout.rebuild(ctx)
	if err != nil {
		return err
	}
	return writeMarker(ctx, p.kv, InfraKeysName, infraKeysSchema, max(last1, last2))
}

// LoadShared implements domain.InfraKeyRepository.
func (p *InfraKeys) LoadShared(ctx context.Context, name string) (*domain.SharedKey, error) {
	s, err := p.shared.load(ctx, name)
	if err != nil || s != nil {
		return s, err
	}
	return &domain.SharedKey{Name: name}, nil
}

// AppendShared implements domain.InfraKeyRepository.
func (p *InfraKeys) AppendShared(ctx context.Context, name string, expected uint64, events []domain.Event) (*domain.SharedKey, error) {
	return p.shared.append(ctx, name, expected, events)
}

// SharedIntake returns the name of the shared key that intake message
// intakeID created, or "" (domain.IntakeService.SharedIntake): an intake
// message's outcome is recorded under the owner it changed, and for a
// shared key that owner is a name the message's subject does not carry.
// It looks through the shared pool in memory (kindIndex), which the log
// says is current, so an outcome request that follows the answer finds it.
func (p *InfraKeys) SharedIntake(ctx context.Context, intakeID string) (string, error) {
	var name string
	err := p.sharedIndex.each(ctx, func(_ string, s *domain.SharedKey) {
		if _, ok := s.Intake[intakeID]; ok {
			name = s.Name
		}
	})
	if err != nil {
		return "", domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	return name, nil
}

// ListShared implements domain.InfraKeyRepository: every live shared key,
// from memory once the log says it is current (kindIndex).
func (p *InfraKeys) ListShared(ctx context.Context) ([]domain.InfraKey, error) {
	var out []domain.InfraKey
	err := p.sharedIndex.each(ctx, func(_ string, s *domain.SharedKey) {
		if s.Key != nil {
			out = append(out, *s.Key)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("projections: list shared keys: %w", err)
	}
	return out, nil
}

// LoadInstance implements domain.InfraKeyRepository.
func (p *InfraKeys) LoadInstance(ctx context.Context, id string) (*domain.Instance, error) {
	in, err := p.instances.load(ctx, id)
	if err != nil || in != nil {
		return in, err
	}
	return &domain.Instance{ID: id, Keys: []domain.InfraKey{}}, nil
}

// AppendInstance implements domain.InfraKeyRepository.
func (p *InfraKeys) AppendInstance(ctx context.Context, id string, expected uint64, events []domain.Event) (*domain.Instance, error) {
	return p.instances.append(ctx, id, expected, events)
}
