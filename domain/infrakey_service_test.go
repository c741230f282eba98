package domain_test

import (
	"context"
	"errors"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// A failed create destroys the private half it sealed, unless the key may
// have been recorded after all: then destroying it would leave a live key
// whose private half can never be read. The repository here is a stand-in
// for the port, to reach each kind of failure; keysd's repository on NATS
// is tested in projections and bus.
func TestCreateSharedFailureKeepsSecretOnlyIfMaybeRecorded(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		appendErr   error
		wantDestroy bool
	}{
		{"ErrUnavailable", domain.Errorf(domain.EUNAVAILABLE, "event log unavailable"), true},
		{"ErrOutcomeUnknown", domain.OutcomeUnknown(domain.Errorf(domain.EUNAVAILABLE, "event log unavailable")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sealer := &countingSealer{}
			svc := &domain.InfraKeyService{Repo: failingRepo{err: tc.appendErr}, Sealer: sealer}
			_, err := svc.CreateShared(ctx, "web", "", domain.KeyMaterial{Generate: "ed25519"}, domain.Meta{})
			if !errors.Is(err, tc.appendErr) {
				t.Fatalf("err = %v, want %v", err, tc.appendErr)
			}
			if got := sealer.destroyed; (got == 1) != tc.wantDestroy || got > 1 {
				t.Errorf("secrets destroyed = %d, want destroyed: %v", got, tc.wantDestroy)
			}
		})
	}
}

// failingRepo has no keys and fails every append with err.
type failingRepo struct{ err error }

func (r failingRepo) LoadShared(_ context.Context, name string) (*domain.SharedKey, error) {
	return &domain.SharedKey{Name: name}, nil
}

func (r failingRepo) AppendShared(context.Context, string, uint64, []domain.Event) (*domain.SharedKey, error) {
	return nil, r.err
}

func (r failingRepo) ListShared(context.Context) ([]domain.InfraKey, error) { return nil, nil }

func (r failingRepo) LoadInstance(_ context.Context, id string) (*domain.Instance, error) {
	return &domain.Instance{ID: id}, nil
}

func (r failingRepo) AppendInstance(context.Context, string, uint64, []domain.Event) (*domain.Instance, error) {
	return nil, r.err
}

// countingSealer seals nothing for real and counts destroyed secrets.
type countingSealer struct{ destroyed int }

func (s *countingSealer) Seal(_ context.Context, k domain.KeyRef, _ []byte) (*domain.SealedSecret, error) {
	return &domain.SealedSecret{SecretID: "secret-of-" + k.ID, Alg: "test", AAD: "key+secretId"}, nil
}

func (s *countingSealer) Open(context.Context, domain.KeyRef, *domain.SealedSecret) ([]byte, error) {
	return nil, errors.New("not sealed for real")
}

func (s *countingSealer) Destroy(context.Context, string) error {
	s.destroyed++
	return nil
}
