package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// InfraKeysName is the stable name of the infrastructure keys projection.
// Renaming it replays the whole log into a new read model.
const InfraKeysName = "infrakeys"

// infraKeysSchema 2: intake records keep the key's name, scope and
// fingerprint, and the bucket indexes intake messages that created a
// shared key. A bucket of schema 1 is rebuilt.
const infraKeysSchema = 2

// InfraKeysBucket holds one document per shared key name ("shared.<name>")
// and one per resource instance ("instance.<id>"), and the shared name
// each intake message that created a shared key created
// ("intake.<intake id>"). Private halves appear in it only sealed.
const InfraKeysBucket = "KEYSD_INFRAKEYS"

// InfraKeys is the infrastructure keys read model and the domain's
// repository for shared keys and instances.
type InfraKeys struct {
	kv        jetstream.KeyValue
	shared    *docStore[domain.SharedKey]
	instances *docStore[domain.Instance]
	log       *bus.EventLog
	logger    *slog.Logger
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
	p := &InfraKeys{kv: kv, log: log, logger: logger,
		shared: &docStore[domain.SharedKey]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerShared, prefix: "shared.",
			apply:   domain.ApplySharedKeyEvent,
			version: func(s *domain.SharedKey) uint64 { return s.Version },
		},
		instances: &docStore[domain.Instance]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerInstance, prefix: "instance.",
			apply:   domain.ApplyInstanceEvent,
			version: func(in *domain.Instance) uint64 { return in.Version },
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
			if err := p.shared.handle(ctx, r); err != nil {
				return err
			}
			return p.indexIntake(ctx, r.Event)
		case domain.OwnerInstance:
			return p.instances.handle(ctx, r)
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
	shared, err := p.shared.all(ctx)
	if err != nil {
		return err
	}
	for _, st := range shared {
		for id := range st.Intake {
			if err := p.indexShared(ctx, id, st.Name); err != nil {
				return err
			}
		}
	}
	last2, err := p.instances.rebuild(ctx)
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
	st, err := p.shared.append(ctx, name, expected, events)
	if err == nil || errors.Is(err, domain.ErrOutcomeUnknown) {
		// Indexed before the writer answers the driver, so an outcome
		// request that follows the answer finds it; if this fails, the
		// projection consumer indexes it a moment later.
		for _, e := range events {
			if ierr := p.indexIntake(ctx, e); ierr != nil {
				p.logger.Warn("intake index not written; the projection will", "owner", e.Owner.ID, "err", ierr)
			}
		}
	}
	return st, err
}

// intakeIndexPrefix starts the keys of the intake index: an intake
// message's outcome is recorded under the owner it changed, and for a
// shared key that owner is a name the message's subject does not carry.
const intakeIndexPrefix = "intake."

// SharedIntake returns the name of the shared key that intake message
// intakeID created, or "" (domain.IntakeService.SharedIntake).
func (p *InfraKeys) SharedIntake(ctx context.Context, intakeID string) (string, error) {
	e, err := p.kv.Get(ctx, intakeIndexPrefix+bus.Token(intakeID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", domain.Errorf(domain.EUNAVAILABLE, "read model unavailable: %v", err)
	}
	return string(e.Value()), nil
}

// indexIntake indexes e if it is a shared key's KeyCreated caused by an
// intake message.
func (p *InfraKeys) indexIntake(ctx context.Context, e domain.Event) error {
	id, ok := strings.CutPrefix(e.CausationID, domain.IntakeCausePrefix)
	if !ok || e.Type != domain.TypeKeyCreated || e.Owner.Kind != domain.OwnerShared {
		return nil
	}
	return p.indexShared(ctx, id, e.Owner.ID)
}

// indexShared records that intake message intakeID created the shared key
// name. Writers and the consumer all index the same facts: a key already
// right is left alone.
func (p *InfraKeys) indexShared(ctx context.Context, intakeID, name string) error {
	key := intakeIndexPrefix + bus.Token(intakeID)
	if e, err := p.kv.Get(ctx, key); err == nil && string(e.Value()) == name {
		return nil
	}
	_, err := p.kv.Put(ctx, key, []byte(name))
	return err
}

// ListShared implements domain.InfraKeyRepository: every live shared key.
func (p *InfraKeys) ListShared(ctx context.Context) ([]domain.InfraKey, error) {
	docs, err := p.shared.all(ctx)
	if err != nil {
		return nil, fmt.Errorf("projections: list shared keys: %w", err)
	}
	var out []domain.InfraKey
	for _, d := range docs {
		if d.Key != nil {
			out = append(out, *d.Key)
		}
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
