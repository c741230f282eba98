package domain_test

import (
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// MustAccount returns the account login with a key for each of keys, named
// after its comment, as stored from version 1 on.
func MustAccount(tb testing.TB, login string, keys ...*domain.PublicKey) *domain.Account {
	tb.Helper()
	evs, err := domain.CreateAccount(nil, login, false, testMeta)
	if err != nil {
		tb.Fatal(err)
	}
	a := MustApply(tb, domain.ApplyAccountEvent, nil, 0, evs...)
	for _, k := range keys {
		ev, err := a.CreateKey("", k, nil, testMeta)
		if err != nil {
			tb.Fatal(err)
		}
		a = MustApply(tb, domain.ApplyAccountEvent, a, a.Version, ev)
	}
	return a
}

func TestCreateAccount(t *testing.T) {
	existing := MustAccount(t, "alice")
	for _, tc := range []struct {
		name     string
		existing *domain.Account
		login    string
		operator bool
		wantCode string
	}{
		{"OK", nil, "alice", false, ""},
		{"OKOperator", nil, "ops", true, ""},
		{"ErrExists", existing, "alice", false, domain.ECONFLICT},
		{"ErrReservedLogin", nil, "my", false, domain.EINVALID},
		{"ErrInvalidLogin", nil, "9lives", false, domain.EINVALID},
		{"ErrTooShort", nil, "a", false, domain.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := domain.CreateAccount(tc.existing, tc.login, tc.operator, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				if len(evs) != 0 {
					t.Errorf("refused, yet decided %d events", len(evs))
				}
				return
			}
			if got, want := len(evs), 1; got != want {
				t.Fatalf("events = %d, want %d", got, want)
			}
			p := MustDecode[domain.AccountCreated](t, evs[0], domain.TypeAccountCreated)
			if got, want := p, (domain.AccountCreated{Login: tc.login, Operator: tc.operator}); got != want {
				t.Errorf("payload = %+v, want %+v", got, want)
			}
			if got, want := evs[0].Owner, domain.AccountOwner(tc.login); got != want {
				t.Errorf("owner = %v, want %v", got, want)
			}
			if got, want := evs[0].Actor, testMeta.Actor; got != want {
				t.Errorf("actor = %q, want %q", got, want)
			}
		})
	}
}

func TestAccountCreateKey(t *testing.T) {
	laptop := MustPublicKey(t, "laptop")
	a := MustAccount(t, "alice", laptop)
	attested := *a
	attested.Policy = domain.Policy{RequireAttestedKeys: true}
	att := &domain.Attestation{Multifactor: []string{"touch"}}
	slashed := MustPublicKey(t, "alice/desk")
	for _, tc := range []struct {
		name     string
		account  *domain.Account
		keyName  string
		key      *domain.PublicKey
		att      *domain.Attestation
		wantCode string
		wantName string // "" for the key's fingerprint
	}{
		{"OK", a, "desk", MustPublicKey(t, "whatever"), nil, "", "desk"},
		{"OKNameFromComment", a, "", MustPublicKey(t, "desk"), nil, "", "desk"},
		{"OKNameFromFingerprint", a, "", slashed, nil, "", ""},
		{"ErrDuplicateName", a, "laptop", MustPublicKey(t, "other"), nil, domain.ECONFLICT, ""},
		{"ErrDuplicateNameFromComment", a, "", MustPublicKey(t, "laptop"), nil, domain.ECONFLICT, ""},
		{"ErrDuplicateFingerprint", a, "again", laptop, nil, domain.ECONFLICT, ""},
		{"ErrInvalidName", a, "a/b", MustPublicKey(t, "x"), nil, domain.EINVALID, ""},
		{"ErrControlCharacter", a, "a\nb", MustPublicKey(t, "x"), nil, domain.EINVALID, ""},
		{"ErrAttestationRequired", &attested, "desk", MustPublicKey(t, "desk"), nil, domain.EFORBIDDEN, ""},
		{"OKAttested", &attested, "desk", MustPublicKey(t, "desk"), att, "", "desk"},
		{"OKAttestedWithoutPolicy", a, "desk", MustPublicKey(t, "desk"), att, "", "desk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tc.account.CreateKey(tc.keyName, tc.key, tc.att, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			p := MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyCreated)
			wantName := tc.wantName
			if wantName == "" {
				wantName = tc.key.Fingerprint
			}
			if got, want := p.Name, wantName; got != want {
				t.Errorf("name = %q, want %q", got, want)
			}
			if got, want := p.Fingerprint, tc.key.Fingerprint; got != want {
				t.Errorf("fingerprint = %q, want %q", got, want)
			}
			if got, want := p.FingerprintSHA256, tc.key.FingerprintSHA256; got != want {
				t.Errorf("fingerprintSHA256 = %q, want %q", got, want)
			}
			if got, want := p.Key, tc.key.Authorized; got != want {
				t.Errorf("key = %q, want %q", got, want)
			}
			if got, want := p.Attestation != nil, tc.att != nil; got != want {
				t.Errorf("attested = %v, want %v", got, want)
			}
			if p.SealedPrivateKey != nil || p.ID != "" {
				t.Errorf("an account key got infrastructure fields: %+v", p)
			}
			after := MustApply(t, domain.ApplyAccountEvent, tc.account, tc.account.Version, ev)
			if after.FindKey(wantName) == nil {
				t.Errorf("the key is not in the account after its event")
			}
		})
	}
}

func TestAccountDeleteKey(t *testing.T) {
	laptop, desk := MustPublicKey(t, "laptop"), MustPublicKey(t, "desk")
	a := MustAccount(t, "alice", laptop, desk)
	one := MustAccount(t, "bob", MustPublicKey(t, "only"))
	for _, tc := range []struct {
		name     string
		account  *domain.Account
		ref      string
		wantCode string
	}{
		{"OKByName", a, "desk", ""},
		{"OKByMD5", a, desk.Fingerprint, ""},
		{"OKByMD5Prefixed", a, "MD5:" + strings.ToUpper(desk.Fingerprint), ""},
		{"OKBySHA256", a, desk.FingerprintSHA256, ""},
		{"ErrNotFound", a, "phone", domain.ENOTFOUND},
		{"ErrLastKey", one, "only", domain.ECONFLICT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tc.account.DeleteKey(tc.ref, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			p := MustDecode[domain.KeyDeleted](t, ev, domain.TypeKeyDeleted)
			if got, want := p, (domain.KeyDeleted{Name: "desk", Fingerprint: desk.Fingerprint}); got != want {
				t.Errorf("payload = %+v, want %+v", got, want)
			}
			after := MustApply(t, domain.ApplyAccountEvent, tc.account, tc.account.Version, ev)
			if got, want := len(after.Keys), 1; got != want {
				t.Fatalf("keys after = %d, want %d", got, want)
			}
			if got, want := after.Keys[0].Name, "laptop"; got != want {
				t.Errorf("key left = %q, want %q", got, want)
			}
		})
	}
}

func TestAccountGrantOperator(t *testing.T) {
	a := MustAccount(t, "alice")
	t.Run("OK", func(t *testing.T) {
		evs := a.GrantOperator(testMeta)
		if got, want := len(evs), 1; got != want {
			t.Fatalf("events = %d, want %d", got, want)
		}
		if got, want := MustDecode[domain.OperatorGranted](t, evs[0], domain.TypeOperatorGranted).Login, "alice"; got != want {
			t.Errorf("login = %q, want %q", got, want)
		}
		if after := MustApply(t, domain.ApplyAccountEvent, a, a.Version, evs...); !after.Operator {
			t.Error("not an operator after OperatorGranted")
		}
	})
	t.Run("AlreadyOperator", func(t *testing.T) {
		op := MustAccount(t, "ops")
		op.Operator = true
		if got := op.GrantOperator(testMeta); len(got) != 0 {
			t.Errorf("decided %d events for an operator", len(got))
		}
	})
}

func TestAccountSetPolicy(t *testing.T) {
	a := MustAccount(t, "alice")
	strict := domain.Policy{RequireAttestedKeys: true, RequireMultifactorSigning: true}
	t.Run("OK", func(t *testing.T) {
		evs, err := a.SetPolicy(strict, testMeta)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(evs), 1; got != want {
			t.Fatalf("events = %d, want %d", got, want)
		}
		if got := MustDecode[domain.AccountPolicySet](t, evs[0], domain.TypePolicySet); got.Login != "alice" || !got.Policy.Equal(strict) {
			t.Errorf("payload = %+v, want alice's %+v", got, strict)
		}
		if got, want := MustApply(t, domain.ApplyAccountEvent, a, a.Version, evs...).Policy, strict; !got.Equal(want) {
			t.Errorf("policy after = %+v, want %+v", got, want)
		}
	})
	t.Run("Unchanged", func(t *testing.T) {
		if got, err := a.SetPolicy(domain.Policy{}, testMeta); err != nil || len(got) != 0 {
			t.Errorf("decided %d events (%v) for the policy in force", len(got), err)
		}
	})
}

func TestAccountCheckSigningKey(t *testing.T) {
	plain := &domain.AccountKey{Name: "plain"}
	attested := &domain.AccountKey{Name: "attested", Attestation: &domain.Attestation{Multifactor: []string{}}}
	touch := &domain.AccountKey{Name: "touch", Attestation: &domain.Attestation{Multifactor: []string{"touch"}}}
	for _, tc := range []struct {
		name     string
		policy   domain.Policy
		key      *domain.AccountKey
		wantCode string
	}{
		{"OK", domain.Policy{}, plain, ""},
		{"OKAttested", domain.Policy{RequireAttestedSigning: true}, attested, ""},
		{"ErrNotAttested", domain.Policy{RequireAttestedSigning: true}, plain, domain.EFORBIDDEN},
		{"OKMultifactor", domain.Policy{RequireMultifactorSigning: true}, touch, ""},
		{"ErrNoMultifactor", domain.Policy{RequireMultifactorSigning: true}, attested, domain.EFORBIDDEN},
		{"ErrMultifactorNotAttested", domain.Policy{RequireMultifactorSigning: true}, plain, domain.EFORBIDDEN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &domain.Account{Login: "alice", Policy: tc.policy}
			CheckCode(t, a.CheckSigningKey(tc.key), tc.wantCode)
		})
	}
}
