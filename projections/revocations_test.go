package projections_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/krl"
	"github.com/infrakeys/infrakeys/projections"
)

// writer appends raw events to a log, each owner's after its last one.
type writer struct {
	tb   testing.TB
	log  *bus.EventLog
	last map[domain.Owner]uint64
	t    time.Time
}

func newWriter(tb testing.TB, log *bus.EventLog) *writer {
	return &writer{tb: tb, log: log, last: map[domain.Owner]uint64{}, t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// MustAppend records payload for owner, one second after the event
// before, and returns its stream sequence.
func (w *writer) MustAppend(owner domain.Owner, payload domain.Payload) uint64 {
	w.tb.Helper()
	w.t = w.t.Add(time.Second)
	e := domain.NewEvent(owner, payload, domain.Meta{Actor: "test", Time: w.t})
	seq, err := w.log.Append(context.Background(), owner, w.last[owner], []domain.Event{e})
	if err != nil {
		w.tb.Fatal(err)
	}
	w.last[owner] = seq
	return seq
}

// keyCreated is the KeyCreated of a fresh key named name.
func keyCreated(tb testing.TB, name string) (domain.KeyCreated, [sha256.Size]byte) {
	tb.Helper()
	k := MustPublicKey(tb, name)
	return domain.KeyCreated{Name: name, Fingerprint: k.Fingerprint, FingerprintSHA256: k.FingerprintSHA256, Key: k.Authorized, Type: k.Type, Bits: k.Bits},
		sha256.Sum256(k.Key.Marshal())
}

// MustCurrent reads the list and parses it.
func MustCurrent(tb testing.TB, r *projections.Revocations) (projections.KRL, *krl.KRL) {
	tb.Helper()
	cur, err := r.Current(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	parsed, err := krl.Parse(cur.Data)
	if err != nil {
		tb.Fatalf("the list does not parse: %v", err)
	}
	return cur, parsed
}

// serialsOf returns the serials the list revokes per CA key (SHA256
// fingerprint of the CA's wire form).
func serialsOf(k *krl.KRL) map[[sha256.Size]byte][]uint64 {
	out := map[[sha256.Size]byte][]uint64{}
	for _, cr := range k.Certificates {
		ca := sha256.Sum256(cr.CA.Marshal())
		for _, s := range cr.Serials {
			for n := s.First; n <= s.Last; n++ {
				out[ca] = append(out[ca], n)
			}
		}
	}
	return out
}

// The list follows the log: revoked serials per trusted CA key; deleted,
// expired, replaced keys and keys of removed instances by fingerprint,
// unless the same key is live elsewhere. Its version and date are those
// of the last event that changed it, so a replica that reads the log from
// scratch at any point serves the same bytes as one that followed it.
func TestRevocations(t *testing.T) {
	e := MustEnv(t)
	w := newWriter(t, e.log)
	follower := projections.NewRevocations(e.log)

	// check reads the list on the follower and on a fresh builder and
	// requires the same bytes, then the version and revoked content.
	check := func(name string, version uint64, serials []uint64, fps ...[sha256.Size]byte) *krl.KRL {
		t.Helper()
		cur, parsed := MustCurrent(t, follower)
		fresh, _ := MustCurrent(t, projections.NewRevocations(e.log))
		if !bytes.Equal(cur.Data, fresh.Data) || cur.Version != fresh.Version {
			t.Errorf("%s: a builder that followed the log and one that read it at once differ (versions %d and %d)", name, cur.Version, fresh.Version)
		}
		if cur.Version != version || parsed.Version != version {
			t.Errorf("%s: version %d (in the list %d), want %d", name, cur.Version, parsed.Version, version)
		}
		slices.SortFunc(fps, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })
		if !slices.Equal(parsed.SHA256, fps) {
			t.Errorf("%s: %d fingerprints revoked, want %d", name, len(parsed.SHA256), len(fps))
		}
		var got []uint64
		for _, s := range serialsOf(parsed) {
			got = append(got, s...)
		}
		slices.Sort(got)
		if !slices.Equal(got, serials) {
			t.Errorf("%s: serials %v, want %v", name, got, serials)
		}
		if want := len(fps) + len(serials); cur.Entries != want {
			t.Errorf("%s: %d entries, want %d", name, cur.Entries, want)
		}
		return parsed
	}

	empty := check("Empty", 0, nil)
	if !empty.Generated.IsZero() || empty.Comment != "infrakeys" {
		t.Errorf("empty list: generated %s, comment %q", empty.Generated, empty.Comment)
	}

	alice, bob := domain.AccountOwner("alice"), domain.AccountOwner("bob")
	w.MustAppend(alice, domain.AccountCreated{Login: "alice"})
	w.MustAppend(bob, domain.AccountCreated{Login: "bob"})
	laptop, laptopFP := keyCreated(t, "laptop")
	w.MustAppend(alice, laptop)
	phone, phoneFP := keyCreated(t, "phone")
	w.MustAppend(alice, phone)

	caPub := MustPublicKey(t, "ca")
	ca := domain.CAOwner(domain.CAUser)
	w.MustAppend(ca, domain.CAKeyCreated{ID: "ca-1", CA: domain.CAUser, PublicKey: caPub.Authorized, FingerprintSHA256: caPub.FingerprintSHA256})
	check("KeysAndCA", 0, nil)

	// The subtests run in order, each on the log the one before left.
	var revoked [][sha256.Size]byte
	serials := []uint64{7}
	t.Run("CertificateRevoked", func(t *testing.T) {
		seq := w.MustAppend(alice, domain.CertificateRevoked{Serial: 7, CAKeyID: "ca-1"})
		w.MustAppend(alice, domain.CertificateRevoked{Serial: 7, CAKeyID: "ca-1"}) // again: no change
		w.MustAppend(alice, domain.CertificateRevoked{Serial: 9, CAKeyID: "unknown"})
		parsed := check("CertificateRevoked", seq, serials)
		if got := serialsOf(parsed)[sha256.Sum256(caPub.Key.Marshal())]; !slices.Equal(got, []uint64{7}) {
			t.Errorf("serials under the CA key = %v, want [7]", got)
		}
		if want := w.t.Add(-2 * time.Second); !parsed.Generated.Equal(want) {
			t.Errorf("generated %s, want %s: the time of the revocation", parsed.Generated, want)
		}
	})

	t.Run("KeyDeletedThenLiveAgain", func(t *testing.T) {
		seq := w.MustAppend(alice, domain.KeyDeleted{Name: "laptop", Fingerprint: laptop.Fingerprint})
		check("Deleted", seq, serials, laptopFP)
		again := laptop
		again.Name = "bobs-laptop"
		seq = w.MustAppend(bob, again)
		check("LiveAgain", seq, serials)
		// Deleted by bob too: revoked again.
		seq = w.MustAppend(bob, domain.KeyDeleted{Name: "bobs-laptop", Fingerprint: laptop.Fingerprint})
		revoked = append(revoked, laptopFP)
		check("DeletedAgain", seq, serials, revoked...)
	})

	t.Run("KeyExpired", func(t *testing.T) {
		seq := w.MustAppend(alice, domain.KeyExpired{Name: "phone", Fingerprint: phone.Fingerprint, FingerprintSHA256: phone.FingerprintSHA256})
		revoked = append(revoked, phoneFP)
		check("Expired", seq, serials, revoked...)
		w.MustAppend(alice, domain.KeyDeleted{Name: "phone", Fingerprint: phone.Fingerprint})
		check("ExpiredThenDeleted", seq, serials, revoked...)
	})

	t.Run("SharedKeyReplaced", func(t *testing.T) {
		shared := domain.SharedOwner("deploy")
		first, firstFP := keyCreated(t, "deploy")
		w.MustAppend(shared, first)
		second, secondFP := keyCreated(t, "deploy")
		seq := w.MustAppend(shared, domain.KeyUpdated(second))
		revoked = append(revoked, firstFP)
		check("Replaced", seq, serials, revoked...)
		second.Description = "new description, same key"
		w.MustAppend(shared, domain.KeyUpdated(second))
		check("DescriptionOnly", seq, serials, revoked...)
		seq = w.MustAppend(shared, domain.KeyDeleted{Name: "deploy", Fingerprint: second.Fingerprint})
		revoked = append(revoked, secondFP)
		check("SharedDeleted", seq, serials, revoked...)
	})

	t.Run("InstanceRemoved", func(t *testing.T) {
		vm := domain.InstanceOwner("vm-1")
		host, hostFP := keyCreated(t, "host")
		w.MustAppend(vm, host)
		other, otherFP := keyCreated(t, "other")
		w.MustAppend(vm, other)
		seq := w.MustAppend(vm, domain.InstanceRemoved{InstanceID: "vm-1"})
		revoked = append(revoked, hostFP, otherFP)
		check("Removed", seq, serials, revoked...)
		// The cascade's deletions change nothing more.
		w.MustAppend(vm, domain.KeyDeleted{Name: "host", Fingerprint: host.Fingerprint})
		w.MustAppend(vm, domain.KeyDeleted{Name: "other", Fingerprint: other.Fingerprint})
		check("Cascaded", seq, serials, revoked...)
	})

	t.Run("OtherKindsChangeNothing", func(t *testing.T) {
		before, _ := MustCurrent(t, follower)
		w.MustAppend(domain.Owner{Kind: domain.OwnerToken, ID: "tok-1"}, domain.TokenRevoked{ID: "tok-1"})
		check("Token", before.Version, serials, revoked...)
	})

	t.Run("CAKeyRetired", func(t *testing.T) {
		seq := w.MustAppend(ca, domain.CAKeyRetired{ID: "ca-1", CA: domain.CAUser})
		serials = nil
		check("Retired", seq, serials, revoked...)
		// A revocation under the retired key adds nothing.
		w.MustAppend(alice, domain.CertificateRevoked{Serial: 8, CAKeyID: "ca-1"})
		check("RevokedUnderRetired", seq, serials, revoked...)
	})
}

// A list that cannot catch up with the log answers EUNAVAILABLE (CloudAPI
// 503), not a stale list.
func TestRevocationsUnavailable(t *testing.T) {
	e := MustEnv(t)
	r := projections.NewRevocations(e.log)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Current(ctx)
	if got := domain.ErrorCode(err); got != domain.EUNAVAILABLE {
		t.Fatalf("Current with an ended context: %v (code %s), want %s", err, got, domain.EUNAVAILABLE)
	}
}
