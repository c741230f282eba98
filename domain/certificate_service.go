package domain

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/crypto/ssh"
)

// CARepository loads and appends the events of the certificate
// authorities.
type CARepository interface {
	LoadCA(ctx context.Context, name string) (*CA, error) // never nil
	AppendCA(ctx context.Context, name string, expected uint64, events []Event) (*CA, error)
}

// CertificateObserver learns of every certificate issued and revoked
// (metrics), by certificate type.
type CertificateObserver interface {
	CertificateIssued(certType string)
	CertificateRevoked(certType string)
}

// CertificateService runs the certificate authority: its keys, and the
// certificates it signs for account and instance keys. Each certificate
// is a CertificateIssued appended to the owner of the key, decided
// against the owner's state, so a key deleted meanwhile gets none.
type CertificateService struct {
	CAs       CARepository
	Accounts  AccountRepository
	Instances InfraKeyRepository
	Sealer    Sealer
	Serials   *Serials
	// Observer is optional.
	Observer CertificateObserver
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// signers caches opened CA private halves by secret id: opening one
	// costs a read of its data key, and every certificate needs one. A
	// retired key's secret is never asked for again (the CA state no
	// longer offers it) and is dropped from the cache.
	signers sync.Map // secret id -> ssh.Signer
}

func (s *CertificateService) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// GetCA returns the CA name with all its keys.
func (s *CertificateService) GetCA(ctx context.Context, name string) (*CA, error) {
	if err := ValidateCAName(name); err != nil {
		return nil, err
	}
	return s.CAs.LoadCA(ctx, name)
}

// CreateCAKey creates a new key of the CA name with algorithm alg (one of
// KeyAlgorithms; "" means DefaultCAKeyAlgorithm). It signs from now on;
// older keys stay trusted until retired.
func (s *CertificateService) CreateCAKey(ctx context.Context, name, alg string, m Meta) (*CAKey, error) {
	if err := ValidateCAName(name); err != nil {
		return nil, err
	}
	if alg == "" {
		alg = DefaultCAKeyAlgorithm
	}
	pair, err := GenerateKeyPair(alg, "keysd-"+name+"-ca")
	if err != nil {
		return nil, err
	}
	n := NewCAKey{ID: ulid.Make().String(), Pair: pair}
	ref := KeyRef{ID: n.ID, Scope: ScopeCA, Name: name}
	if n.Sealed, err = s.Sealer.Seal(ctx, ref, pair.PrivateKey); err != nil {
		return nil, err
	}
	ca, err := s.runCA(ctx, name, func(ca *CA) ([]Event, error) {
		ev, err := ca.AddKey(n, m)
		return []Event{ev}, err
	})
	if err != nil {
		if !errors.Is(err, ErrOutcomeUnknown) {
			_ = s.Sealer.Destroy(context.WithoutCancel(ctx), n.Sealed.SecretID)
		}
		return nil, err
	}
	k := ca.FindKey(n.ID)
	if k == nil {
		return nil, Errorf(EINTERNAL, "created CA key is missing from the CA state")
	}
	return k, nil
}

// RetireCAKey retires the key of CA name that ref (id or SHA256
// fingerprint) names; the shredder destroys its private half.
func (s *CertificateService) RetireCAKey(ctx context.Context, name, ref string, m Meta) (*CAKey, error) {
	if err := ValidateCAName(name); err != nil {
		return nil, err
	}
	var gone *SealedSecret
	ca, err := s.runCA(ctx, name, func(ca *CA) ([]Event, error) {
		gone = nil
		if k := ca.FindKey(ref); k != nil {
			gone = k.PrivateKey
		}
		return ca.RetireKey(ref, m)
	})
	if err != nil {
		return nil, err
	}
	if gone != nil {
		// Its data key is destroyed by the shredder, from the
		// CAKeyRetired (InfraKeyService.Shred): one owner of destruction.
		s.signers.Delete(gone.SecretID)
	}
	return ca.FindKey(ref), nil
}

// SignUserCertificate signs a user certificate for the key of account
// login that ref names. loaded, when not nil, is that account as the
// request already read it; the command then starts from it.
func (s *CertificateService) SignUserCertificate(ctx context.Context, login string, loaded *Account, ref string, req CertRequest, m Meta) (*CertificateIssued, error) {
	if loaded != nil && loaded.Login != login {
		return nil, Errorf(EINTERNAL, "a command on account %s cannot start from the state of account %s", login, loaded.Login)
	}
	return signCertificate(ctx, s, Accounts(s.Accounts), AccountOwner(login), accountSnapshot(loaded), CAUser, CertTypeUser, m,
		func(a *Account) (*ssh.Certificate, string, error) {
			if a == nil {
				return nil, "", Errorf(ENOTFOUND, "%s does not exist", login)
			}
			cert, k, err := a.PlanUserCertificate(ref, req, s.now())
			if err != nil {
				return nil, "", err
			}
			return cert, k.Name, nil
		})
}

// SignHostCertificate signs a host certificate for the key name of
// instance id.
func (s *CertificateService) SignHostCertificate(ctx context.Context, id, name string, req CertRequest, m Meta) (*CertificateIssued, error) {
	if err := ValidateInstanceID(id); err != nil {
		return nil, err
	}
	return signCertificate(ctx, s, Instances(s.Instances), InstanceOwner(id), nil, CAHost, CertTypeHost, m,
		func(in *Instance) (*ssh.Certificate, string, error) {
			cert, k, err := in.PlanHostCertificate(name, req, s.now())
			if err != nil {
				return nil, "", err
			}
			return cert, k.Name, nil
		})
}

// signCertificate runs one certificate command on owner, of the kind repo
// holds: plan decides the certificate (and names the certified key)
// against the owner's state, and CA caName signs and records it, decided
// again after a concurrent write. loaded, when not nil, is the owner's
// state as the request read it.
func signCertificate[S any](ctx context.Context, s *CertificateService, repo Repository[S], owner Owner, loaded *Snapshot[S],
	caName, certType string, m Meta, plan func(S) (*ssh.Certificate, string, error)) (*CertificateIssued, error) {
	var issued CertificateIssued
	serial := uint64(0)
	_, err := Execute(ctx, repo, owner, loaded, func(st S) ([]Event, error) {
		cert, keyName, err := plan(st)
		if err != nil {
			return nil, err
		}
		ev, err := s.issue(ctx, owner, caName, cert, keyName, &serial, m)
		if err != nil {
			return nil, err
		}
		return []Event{ev}, ev.Decode(&issued)
	})
	if err != nil {
		return nil, err
	}
	if s.Observer != nil {
		s.Observer.CertificateIssued(certType)
	}
	return &issued, nil
}

// issue signs cert with CA ca's signing key. *serial is the command's
// serial, taken at its first decision and kept when a version conflict
// makes it decide again: that decision's event was not appended, so the
// serial is still unused.
//
// The CA is read, not decided against: a key retired while a certificate
// is being signed may still sign it (the certificate is recorded like any
// other). It is refused wherever the retired key is no longer trusted,
// which is the point of retiring it.
func (s *CertificateService) issue(ctx context.Context, owner Owner, caName string, cert *ssh.Certificate, keyName string, serial *uint64, m Meta) (Event, error) {
	ca, err := s.CAs.LoadCA(ctx, caName)
	if err != nil {
		return Event{}, err
	}
	caKey, err := ca.Signing()
	if err != nil {
		return Event{}, err
	}
	signer, err := s.signer(ctx, caName, caKey)
	if err != nil {
		return Event{}, err
	}
	if *serial == 0 {
		if *serial, err = s.Serials.Next(ctx, Meta{Actor: m.Actor, RequestID: m.RequestID, CorrelationID: m.CorrelationID}); err != nil {
			return Event{}, err
		}
	}
	return IssueCertificate(owner, cert, keyName, *serial, caKey, signer, m)
}

// signer returns the opened private half of caKey.
func (s *CertificateService) signer(ctx context.Context, caName string, caKey *CAKey) (ssh.Signer, error) {
	if caKey.PrivateKey == nil {
		return nil, Errorf(EINTERNAL, "CA key %s has no private half", caKey.ID)
	}
	if v, ok := s.signers.Load(caKey.PrivateKey.SecretID); ok {
		return v.(ssh.Signer), nil
	}
	pem, err := s.Sealer.Open(ctx, caKey.Ref(caName), caKey.PrivateKey)
	if errors.Is(err, ErrSecretDestroyed) {
		return nil, Errorf(EUNAVAILABLE, "the %s CA key %s was retired meanwhile; retry", caName, caKey.ID)
	}
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: private half does not parse", caKey.ID)
	}
	s.signers.Store(caKey.PrivateKey.SecretID, signer)
	return signer, nil
}

// RevokeCertificate revokes the certificate serial of account login,
// starting from loaded as SignUserCertificate does.
func (s *CertificateService) RevokeCertificate(ctx context.Context, login string, loaded *Account, serial uint64, m Meta) error {
	if loaded != nil && loaded.Login != login {
		return Errorf(EINTERNAL, "a command on account %s cannot start from the state of account %s", login, loaded.Login)
	}
	var revoked string
	_, err := Execute(ctx, Accounts(s.Accounts), AccountOwner(login), accountSnapshot(loaded),
		func(a *Account) ([]Event, error) {
			if a == nil {
				return nil, Errorf(ENOTFOUND, "%s does not exist", login)
			}
			evs, err := a.RevokeCertificate(serial, s.now(), m)
			revoked = ""
			if len(evs) > 0 {
				revoked = a.FindCertificate(serial).CertType
			}
			return evs, err
		})
	if err == nil && revoked != "" && s.Observer != nil {
		s.Observer.CertificateRevoked(revoked)
	}
	return err
}

func (s *CertificateService) runCA(ctx context.Context, name string, decide Decision[*CA]) (*CA, error) {
	return Execute(ctx, CAs(s.CAs), CAOwner(name), nil, decide)
}

// CAs is the Repository of certificate authorities that repo provides.
func CAs(repo CARepository) Repository[*CA] {
	return repository(repo.LoadCA, repo.AppendCA, func(ca *CA) uint64 { return ca.Version })
}

// accountSnapshot is the start state of a command from an account the
// request loaded; nil when it loaded none.
func accountSnapshot(a *Account) *Snapshot[*Account] {
	if a == nil {
		return nil
	}
	return &Snapshot[*Account]{State: a, Version: a.Version}
}
