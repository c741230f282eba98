package domain_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// MustNewInfraKey describes a new key named name with a fresh pair; its
// private half is "sealed" as a stand-in whose id is secretID ("" for a
// key without a private half).
func MustNewInfraKey(tb testing.TB, name, secretID string) domain.NewInfraKey {
	tb.Helper()
	n := domain.NewInfraKey{ID: "id-" + name, Name: name, Description: "about " + name, Pair: MustKeyPair(tb, name)}
	if secretID != "" {
		n.Sealed = &domain.SealedSecret{SecretID: secretID, Alg: "test", AAD: "key+secretId"}
	}
	return n
}

// MustShared returns the shared key created from n, as stored at version 1.
func MustShared(tb testing.TB, n domain.NewInfraKey) *domain.SharedKey {
	tb.Helper()
	ev, err := (&domain.SharedKey{Name: n.Name}).CreateShared(n, testMeta)
	if err != nil {
		tb.Fatal(err)
	}
	return MustApply(tb, domain.ApplySharedKeyEvent, nil, 0, ev)
}

func TestSharedKeyCreate(t *testing.T) {
	web := MustShared(t, MustNewInfraKey(t, "web", "s-web"))
	for _, tc := range []struct {
		name     string
		state    *domain.SharedKey
		key      domain.NewInfraKey
		wantCode string
	}{
		{"OK", &domain.SharedKey{Name: "db"}, MustNewInfraKey(t, "db", "s-db"), ""},
		{"OKPublicOnly", &domain.SharedKey{Name: "db"}, MustNewInfraKey(t, "db", ""), ""},
		{"ErrDuplicateName", web, MustNewInfraKey(t, "web", "s-2"), domain.ECONFLICT},
		{"ErrMissingName", &domain.SharedKey{}, MustNewInfraKey(t, "", "s"), domain.EMISSING},
		{"ErrInvalidName", &domain.SharedKey{Name: "a/b"}, MustNewInfraKey(t, "a/b", "s"), domain.EINVALID},
		{"ErrDescriptionTooLong", &domain.SharedKey{Name: "db"}, func() domain.NewInfraKey {
			n := MustNewInfraKey(t, "db", "s")
			n.Description = strings.Repeat("x", 4097)
			return n
		}(), domain.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tc.state.CreateShared(tc.key, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			if got, want := ev.Owner, domain.SharedOwner(tc.key.Name); got != want {
				t.Errorf("owner = %v, want %v", got, want)
			}
			p := MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyCreated)
			if got, want := p.ID, tc.key.ID; got != want {
				t.Errorf("id = %q, want %q", got, want)
			}
			if got, want := p.Fingerprint, tc.key.Pair.Fingerprint; got != want {
				t.Errorf("fingerprint = %q, want %q", got, want)
			}
			if got, want := MustJSON(t, p.SealedPrivateKey), MustJSON(t, tc.key.Sealed); got != want {
				t.Errorf("sealed private half = %v, want %v", got, want)
			}
			after := MustApply(t, domain.ApplySharedKeyEvent, tc.state, tc.state.Version, ev)
			if after.Key == nil || after.Key.Scope != domain.ScopeShared || after.Key.Description != tc.key.Description {
				t.Errorf("key after its event = %+v", after.Key)
			}
		})
	}
}

func TestSharedKeyChange(t *testing.T) {
	sealed := MustShared(t, MustNewInfraKey(t, "web", "s-web"))
	public := MustShared(t, MustNewInfraKey(t, "pub", ""))
	desc := "new words"
	newPair := MustKeyPair(t, "next")
	newSealed := &domain.SealedSecret{SecretID: "s-next", Alg: "test"}
	type want struct {
		code        string
		description string
		fingerprint string // "" for unchanged
		replaced    string // the secret id the change replaces
		sealedID    string // the secret id after the change
	}
	for _, tc := range []struct {
		name   string
		state  *domain.SharedKey
		change domain.SharedKeyChange
		pair   *domain.KeyPair
		sealed *domain.SealedSecret
		want   want
	}{
		{"OKDescription", sealed, domain.SharedKeyChange{Description: &desc}, nil, nil,
			want{description: desc, sealedID: "s-web"}},
		{"OKSameIDAndName", sealed, domain.SharedKeyChange{ID: "id-web", Name: "web"}, nil, nil,
			want{description: "about web", sealedID: "s-web"}},
		{"OKNewPair", sealed, domain.SharedKeyChange{}, newPair, newSealed,
			want{description: "about web", fingerprint: newPair.Fingerprint, replaced: "s-web", sealedID: "s-next"}},
		{"OKNewPairWithoutPrivateHalf", public, domain.SharedKeyChange{}, newPair, nil,
			want{description: "about pub", fingerprint: newPair.Fingerprint}},
		{"OKPublicHalfAlone", public, domain.SharedKeyChange{PublicKey: newPair.PublicKey}, nil, nil,
			want{description: "about pub", fingerprint: newPair.Fingerprint}},
		{"OKPublicHalfOfThePrivateHalf", sealed, domain.SharedKeyChange{PublicKey: sealed.Key.PublicKey}, nil, nil,
			want{description: "about web", fingerprint: sealed.Key.Fingerprint, sealedID: "s-web"}},
		{"ErrPublicHalfMismatch", sealed, domain.SharedKeyChange{PublicKey: newPair.PublicKey}, nil, nil,
			want{code: domain.ECONFLICT}},
		{"ErrPublicHalfInvalid", sealed, domain.SharedKeyChange{PublicKey: "ssh-ed25519 AAAA"}, nil, nil,
			want{code: domain.EINVALID}},
		{"ErrRename", sealed, domain.SharedKeyChange{Name: "www"}, nil, nil, want{code: domain.EINVALID}},
		{"ErrOtherID", sealed, domain.SharedKeyChange{ID: "id-other"}, nil, nil, want{code: domain.EINVALID}},
		{"ErrNotFound", &domain.SharedKey{Name: "gone"}, domain.SharedKeyChange{Description: &desc}, nil, nil,
			want{code: domain.ENOTFOUND}},
		{"ErrDescriptionTooLong", sealed, domain.SharedKeyChange{Description: new(strings.Repeat("x", 4097))}, nil, nil,
			want{code: domain.EINVALID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, replaced, err := tc.state.Change(tc.change, tc.pair, tc.sealed, testMeta)
			CheckCode(t, err, tc.want.code)
			if err != nil {
				return
			}
			p := MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyUpdated)
			wantFP := tc.want.fingerprint
			if wantFP == "" {
				wantFP = tc.state.Key.Fingerprint
			}
			if got, want := p.Fingerprint, wantFP; got != want {
				t.Errorf("fingerprint = %q, want %q", got, want)
			}
			if got, want := p.Description, tc.want.description; got != want {
				t.Errorf("description = %q, want %q", got, want)
			}
			if got, want := p.ID, tc.state.Key.ID; got != want {
				t.Errorf("id = %q, want %q (an update keeps the key's id)", got, want)
			}
			gotReplaced := ""
			if replaced != nil {
				gotReplaced = replaced.SecretID
			}
			if got, want := gotReplaced, tc.want.replaced; got != want {
				t.Errorf("replaced secret = %q, want %q", got, want)
			}
			if got, want := p.ReplacedSecretID, tc.want.replaced; got != want {
				t.Errorf("replacedSecretId = %q, want %q", got, want)
			}
			if got, want := domain.ShreddedSecret(ev), tc.want.replaced; got != want {
				t.Errorf("ShreddedSecret = %q, want %q", got, want)
			}
			after := MustApply(t, domain.ApplySharedKeyEvent, tc.state, tc.state.Version, ev)
			gotSealed := ""
			if after.Key.PrivateKey != nil {
				gotSealed = after.Key.PrivateKey.SecretID
			}
			if got, want := gotSealed, tc.want.sealedID; got != want {
				t.Errorf("sealed private half after = %q, want %q", got, want)
			}
			if got, want := after.Key.Created, tc.state.Key.Created; !got.Equal(want) {
				t.Errorf("created after = %v, want %v (unchanged)", got, want)
			}
		})
	}
}

func TestSharedKeyDelete(t *testing.T) {
	for _, tc := range []struct {
		name       string
		state      *domain.SharedKey
		wantCode   string
		wantSecret string
	}{
		{"OK", MustShared(t, MustNewInfraKey(t, "web", "s-web")), "", "s-web"},
		{"OKPublicOnly", MustShared(t, MustNewInfraKey(t, "pub", "")), "", ""},
		{"ErrNotFound", &domain.SharedKey{Name: "gone"}, domain.ENOTFOUND, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tc.state.Delete(testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			p := MustDecode[domain.KeyDeleted](t, ev, domain.TypeKeyDeleted)
			if got, want := p, (domain.KeyDeleted{ID: tc.state.Key.ID, Name: tc.state.Name, Fingerprint: tc.state.Key.Fingerprint, SecretID: tc.wantSecret}); got != want {
				t.Errorf("payload = %+v, want %+v", got, want)
			}
			if got, want := domain.ShreddedSecret(ev), tc.wantSecret; got != want {
				t.Errorf("ShreddedSecret = %q, want %q", got, want)
			}
			if after := MustApply(t, domain.ApplySharedKeyEvent, tc.state, tc.state.Version, ev); after.Key != nil {
				t.Errorf("key after its deletion = %+v", after.Key)
			}
		})
	}
}

// MustInstance returns instance id with a key for each name, each with a
// private half.
func MustInstance(tb testing.TB, id string, names ...string) *domain.Instance {
	tb.Helper()
	in := &domain.Instance{ID: id, Keys: []domain.InfraKey{}}
	for _, name := range names {
		ev, err := in.AddKey(MustNewInfraKey(tb, name, "s-"+name), testMeta)
		if err != nil {
			tb.Fatal(err)
		}
		in = MustApply(tb, domain.ApplyInstanceEvent, in, in.Version, ev)
	}
	return in
}

// MustRemoved returns in after its removal.
func MustRemoved(tb testing.TB, in *domain.Instance) *domain.Instance {
	tb.Helper()
	return MustApply(tb, domain.ApplyInstanceEvent, in, in.Version, in.Remove(testMeta)...)
}

func TestInstanceAddKey(t *testing.T) {
	in := MustInstance(t, "vm-1", "ssh")
	for _, tc := range []struct {
		name     string
		state    *domain.Instance
		key      domain.NewInfraKey
		wantCode string
	}{
		{"OK", in, MustNewInfraKey(t, "deploy", "s-deploy"), ""},
		{"ErrDuplicateName", in, MustNewInfraKey(t, "ssh", "s-2"), domain.ECONFLICT},
		{"ErrInstanceRemoved", MustRemoved(t, in), MustNewInfraKey(t, "deploy", "s-deploy"), domain.ECONFLICT},
		{"ErrInvalidName", in, MustNewInfraKey(t, "a/b", ""), domain.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := tc.state.AddKey(tc.key, testMeta)
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				return
			}
			if got, want := ev.Owner, domain.InstanceOwner("vm-1"); got != want {
				t.Errorf("owner = %v, want %v", got, want)
			}
			MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyCreated)
			after := MustApply(t, domain.ApplyInstanceEvent, tc.state, tc.state.Version, ev)
			k := after.FindKey(tc.key.Name)
			if k == nil {
				t.Fatal("the key is not in the instance after its event")
			}
			if got, want := *k, (domain.InfraKey{ID: tc.key.ID, Name: tc.key.Name, Description: tc.key.Description, Scope: domain.ScopeInstance, InstanceID: "vm-1",
				PublicKey: tc.key.Pair.PublicKey, Type: tc.key.Pair.Type, Bits: tc.key.Pair.Bits, Fingerprint: tc.key.Pair.Fingerprint,
				FingerprintSHA256: tc.key.Pair.FingerprintSHA256, PrivateKey: tc.key.Sealed, Created: testMeta.Time, Updated: testMeta.Time}); MustJSON(t, got) != MustJSON(t, want) {
				t.Errorf("key = %+v, want %+v", got, want)
			}
		})
	}
}

func TestInstanceRemove(t *testing.T) {
	in := MustInstance(t, "vm-1", "a", "b")
	t.Run("OK", func(t *testing.T) {
		evs := in.Remove(testMeta)
		if got, want := len(evs), 2; got != want {
			t.Fatalf("events = %d, want %d", got, want)
		}
		if got, want := MustDecode[domain.InstanceRemoved](t, evs[0], domain.TypeInstanceRemoved).InstanceID, "vm-1"; got != want {
			t.Errorf("instanceId = %q, want %q", got, want)
		}
		// With it, the cascade's work item, on an owner of its own, caused
		// by the removal.
		if got, want := MustDecode[domain.CascadeRequested](t, evs[1], domain.TypeCascadeRequested).InstanceID, "vm-1"; got != want {
			t.Errorf("cascade instanceId = %q, want %q", got, want)
		}
		if evs[1].Owner != domain.CascadeOwner("vm-1") || evs[1].CausationID != evs[0].ID || evs[1].CorrelationID != evs[0].CorrelationID {
			t.Errorf("cascade request owner %v, causation %q, correlation %q; want %v, %q, %q",
				evs[1].Owner, evs[1].CausationID, evs[1].CorrelationID, domain.CascadeOwner("vm-1"), evs[0].ID, evs[0].CorrelationID)
		}
		after := MustApply(t, domain.ApplyInstanceEvent, in, in.Version, evs...)
		if !after.Removed || after.RemovedBy != evs[0].ID {
			t.Errorf("after removal: removed %v by %q, want true by %q", after.Removed, after.RemovedBy, evs[0].ID)
		}
		// The work item is not the instance's: its version stays that of
		// the InstanceRemoved, which the next append is checked against.
		if got, want := after.Version, in.Version+1; got != want {
			t.Errorf("version after removal = %d, want %d", got, want)
		}
		// The removal deletes no key by itself: the cascade does, one
		// KeyDeleted each.
		if got, want := len(after.Keys), 2; got != want {
			t.Errorf("keys right after the removal = %d, want %d", got, want)
		}
	})
	t.Run("AlreadyRemoved", func(t *testing.T) {
		if got := MustRemoved(t, in).Remove(testMeta); len(got) != 0 {
			t.Errorf("decided %d events for a removed instance", len(got))
		}
	})
}

// The cascade's decisions: which KeyDeleted events a removed instance
// needs, in batches of at most max, until none is left.
func TestInstanceCascade(t *testing.T) {
	for _, tc := range []struct {
		name        string
		keys        int
		removed     bool
		max         int
		wantBatches []int
	}{
		{"OK", 3, true, 1000, []int{3}},
		{"Batches", 5, true, 2, []int{2, 2, 1}},
		{"ExactBatches", 4, true, 2, []int{2, 2}},
		{"NoKeys", 0, true, 2, nil},
		{"NotRemoved", 3, false, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			for i := range tc.keys {
				names = append(names, fmt.Sprintf("k%d", i))
			}
			in := MustInstance(t, "vm-1", names...)
			if tc.removed {
				in = MustRemoved(t, in)
			}
			var batches []int
			deleted := map[string]bool{}
			for range tc.keys + 1 {
				evs := in.Cascade(tc.max, testMeta)
				if len(evs) == 0 {
					break
				}
				batches = append(batches, len(evs))
				for _, ev := range evs {
					p := MustDecode[domain.KeyDeleted](t, ev, domain.TypeKeyDeleted)
					if deleted[p.Name] {
						t.Errorf("%s deleted twice", p.Name)
					}
					deleted[p.Name] = true
					if got, want := p.SecretID, "s-"+p.Name; got != want {
						t.Errorf("secretId of %s = %q, want %q", p.Name, got, want)
					}
					if got, want := ev.CausationID, in.RemovedBy; got != want {
						t.Errorf("causationId = %q, want the InstanceRemoved %q", got, want)
					}
				}
				in = MustApply(t, domain.ApplyInstanceEvent, in, in.Version, evs...)
			}
			if got, want := fmt.Sprint(batches), fmt.Sprint(tc.wantBatches); got != want {
				t.Errorf("batches = %s, want %s", got, want)
			}
			wantLeft := tc.keys
			if tc.removed {
				wantLeft = 0
			}
			if got, want := len(in.Keys), wantLeft; got != want {
				t.Errorf("keys left = %d, want %d", got, want)
			}
			if got, want := in.Removed, tc.removed; got != want {
				t.Errorf("removed = %v, want %v", got, want)
			}
		})
	}
}
