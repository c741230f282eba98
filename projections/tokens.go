package projections

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// TokensName is the stable name of the API tokens projection.
const TokensName = "tokens"

const tokensSchema = 1

// tokensCacheBytes bounds the tokens held in memory: about 8,000.
const tokensCacheBytes = 4 << 20

// TokensBucket holds one document per API token: its roles and the hash
// of its secret, never the secret.
const TokensBucket = "KEYSD_TOKENS"

// Tokens is the API tokens read model and the domain's token repository.
type Tokens struct {
	kv     jetstream.KeyValue
	docs   *docStore[domain.Token]
	index  *kindIndex[domain.Token] // lists
	log    *bus.EventLog
	logger *slog.Logger
}

var _ domain.TokenRepository = (*Tokens)(nil)

// OpenTokens opens the bucket, rebuilding or re-checking it if needed
// (OpenAccounts).
func OpenTokens(ctx context.Context, c *bus.Conn, log *bus.EventLog, logger *slog.Logger) (*Tokens, error) {
	kv, mayHaveLost, err := openBucket(ctx, c, TokensBucket, "infrakeys read model: API tokens (hashes only)")
	if err != nil {
		return nil, err
	}
	p := &Tokens{kv: kv, log: log, logger: logger,
		index: &kindIndex[domain.Token]{log: log, kind: domain.OwnerToken, apply: domain.ApplyTokenEvent},
		docs: &docStore[domain.Token]{
			kv: kv, js: c.JS, log: log, kind: domain.OwnerToken, prefix: "token.",
			apply:   domain.ApplyTokenEvent,
			version: func(t *domain.Token) uint64 { return t.Version },
			clone:   cloneToken,
			cache:   newStateCache(tokensCacheBytes, tokenSize),
		}}
	if err := ensureBuilt(ctx, c, kv, mayHaveLost, p, tokensSchema, logger); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements Projection.
func (p *Tokens) Name() string { return TokensName }

// Run keeps the read model up to date from the log until ctx ends.
func (p *Tokens) Run(ctx context.Context) error {
	return runConsumer(ctx, p.log, p.logger, TokensName, []string{bus.KindSubjects(domain.OwnerToken)}, p.docs.handle)
}

// Rebuild recomputes every document from the whole log.
func (p *Tokens) Rebuild(ctx context.Context) error {
	last, err := p.docs.rebuild(ctx)
	if err != nil {
		return err
	}
	return writeMarker(ctx, p.kv, TokensName, tokensSchema, last)
}

// LoadToken implements domain.TokenRepository.
func (p *Tokens) LoadToken(ctx context.Context, id string) (*domain.Token, error) {
	return p.docs.load(ctx, id)
}

// AppendToken implements domain.TokenRepository.
func (p *Tokens) AppendToken(ctx context.Context, id string, expected uint64, events []domain.Event) (*domain.Token, error) {
	return p.docs.append(ctx, id, expected, events)
}

// ListTokens implements domain.TokenRepository: every token, from memory
// once the log says it is current (kindIndex).
func (p *Tokens) ListTokens(ctx context.Context) ([]domain.Token, error) {
	var out []domain.Token
	err := p.index.each(ctx, func(_ string, t *domain.Token) {
		if t != nil {
			out = append(out, *t)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
