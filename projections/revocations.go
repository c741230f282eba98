package projections

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/krl"
)

// krlComment is the comment of every revocation list keysd writes.
const krlComment = "infrakeys"

// revocationKinds are the owner kinds whose events say what is revoked:
// keys live in accounts, the shared pool and instances; CA keys in CAs.
var revocationKinds = []string{domain.OwnerAccount, domain.OwnerShared, domain.OwnerInstance, domain.OwnerCA}

// Revocations is the OpenSSH revocation list (KRL) of keysd, kept in
// memory from the event log. It revokes
//
//   - per trusted CA key (a CAKeyCreated without its CAKeyRetired), the
//     serials of its certificates that were revoked (CertificateRevoked);
//     a retired CA key is untrusted everywhere anyway, so its serials go;
//   - by SHA256 fingerprint, every key that stopped being valid: deleted
//     (KeyDeleted), expired (KeyExpired), replaced (a KeyUpdated with
//     another public key) or left on a removed instance (InstanceRemoved,
//     before the cascade's KeyDeleted arrive), unless the same public key
//     is live elsewhere (added again, to any owner).
//
// Every replica builds the same list from the same log: its version is
// the stream sequence of the last event that changed it, and its date that
// event's time, so two replicas at one point of the log serve the same
// bytes. A read first asks the stream's leader for the log's last sequence
// and applies every event up to it (kindIndex's pattern), so it includes
// every write acknowledged before it began, on whichever replica.
//
// Memory: one map entry per live key (owner, name, fingerprint), per
// revoked fingerprint and per revoked serial of a trusted CA key, plus the
// last list encoded (about 36 bytes per fingerprint and at most 8 per
// serial). It grows with the keys ever revoked, not with the log: a
// fingerprint or serial once revoked stays listed (docs/BENCHMARKS.md
// measures it).
type Revocations struct {
	log *bus.EventLog

	mu      sync.Mutex
	built   bool   // the first read replayed the log
	last    uint64 // every event up to here is applied
	version uint64 // the last event that changed the list
	date    time.Time

	owners  map[domain.Owner]map[string]*liveKey // live keys, by owner and name
	live    map[[sha256.Size]byte]int            // live registrations per fingerprint
	revoked map[[sha256.Size]byte]struct{}       // revoked fingerprints, none of them live
	cas     map[string]*caRevocations            // trusted CA keys, by id

	encoded        []byte // the list at encodedVersion
	encodedVersion uint64
	entries        int
}

// liveKey is a key of an owner, as the list needs it.
type liveKey struct {
	fp      [sha256.Size]byte
	expired bool // its KeyExpired is applied: it no longer counts as live
}

// caRevocations is a trusted CA key and the serials it signed that are
// revoked.
type caRevocations struct {
	key     ssh.PublicKey
	serials map[uint64]struct{}
}

// NewRevocations returns the revocation list of log; it reads the log at
// its first use.
func NewRevocations(log *bus.EventLog) *Revocations {
	return &Revocations{
		log:     log,
		owners:  map[domain.Owner]map[string]*liveKey{},
		live:    map[[sha256.Size]byte]int{},
		revoked: map[[sha256.Size]byte]struct{}{},
		cas:     map[string]*caRevocations{},
	}
}

// KRL is one revocation list, encoded.
type KRL struct {
	// Data is the list in OpenSSH's binary format.
	Data []byte
	// Version is the stream sequence of the last event that changed the
	// list (0: nothing is revoked yet).
	Version uint64
	// Entries counts the revoked serials and fingerprints.
	Entries int
}

// Current returns the list as of the log's last event when it is called:
// it applies every event up to that one first. An error is EUNAVAILABLE
// when the log cannot be read (or ctx ends first).
func (r *Revocations) Current(ctx context.Context) (KRL, error) {
	// The stream's last sequence, from its leader (stream info: cheaper
	// than the last message of a wildcard over every owner's subject).
	latest, err := r.log.LastSeq(ctx)
	if err != nil {
		return KRL{}, domain.Errorf(domain.EUNAVAILABLE, "event log unavailable: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if latest > r.last || !r.built {
		if err := r.catchUp(ctx, latest); err != nil {
			var bad *applyError
			if errors.As(err, &bad) {
				// An event this build cannot read (a newer version during
				// a rolling upgrade): every read fails until it can.
				return KRL{}, fmt.Errorf("projections: revocation list: %w", err)
			}
			return KRL{}, domain.Errorf(domain.EUNAVAILABLE, "the revocation list has not caught up with the event log: %v", err)
		}
	}
	if r.encoded == nil || r.encodedVersion != r.version {
		if err := r.encode(); err != nil {
			return KRL{}, err
		}
	}
	return KRL{Data: r.encoded, Version: r.version, Entries: r.entries}, nil
}

// CurrentKRL is Current, as the HTTP server asks for it.
func (r *Revocations) CurrentKRL(ctx context.Context) ([]byte, uint64, error) {
	k, err := r.Current(ctx)
	return k.Data, k.Version, err
}

// catchUp applies the events after r.last up to latest at least. The
// first time, and whenever it is far behind, it replays the log (one
// consumer streaming it, the events of other kinds skipped undecoded);
// then it reads what is left from the stream's leader, since the replay's
// consumer may run on a replica that lags.
func (r *Revocations) catchUp(ctx context.Context, latest uint64) error {
	all := bus.SubjectPrefix + ".>"
	if !r.built || latest-r.last > tailStep {
		last, err := r.log.Replay(ctx, bus.ReplayOptions{Kinds: revocationKinds, StartSeq: r.last + 1}, r.add)
		if err != nil {
			return err
		}
		r.last = max(r.last, last)
		r.built = true
	}
	for r.last < latest {
		rs, more, err := r.log.ReadSubject(ctx, all, r.last, tailStep)
		if err != nil {
			return err
		}
		for _, rec := range rs {
			if err := r.add(rec); err != nil {
				return err
			}
		}
		if !more && r.last < latest {
			return fmt.Errorf("read up to %d, the log has %d", r.last, latest)
		}
	}
	return nil
}

// add applies rec, which must follow every event applied.
func (r *Revocations) add(rec bus.Recorded) error {
	if rec.Seq <= r.last {
		return nil
	}
	changed, err := r.apply(rec.Event)
	if err != nil {
		return &applyError{seq: rec.Seq, err: err}
	}
	r.last = rec.Seq
	if changed {
		r.version, r.date = rec.Seq, rec.Event.Time
	}
	return nil
}

// applyError is an event the list cannot apply, as opposed to a log it
// cannot read.
type applyError struct {
	seq uint64
	err error
}

func (e *applyError) Error() string { return fmt.Sprintf("event %d: %v", e.seq, e.err) }
func (e *applyError) Unwrap() error { return e.err }

// apply applies e and reports whether the list changed.
func (r *Revocations) apply(e domain.Event) (bool, error) {
	if !slices.Contains(revocationKinds, e.Owner.Kind) {
		return false, nil
	}
	switch e.Type {
	case domain.TypeKeyCreated, domain.TypeKeyUpdated:
		var p domain.KeyCreated
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		fp, err := keyFingerprint(p.FingerprintSHA256, p.Key)
		if err != nil {
			return false, fmt.Errorf("%s %s: %w", e.Type, e.ID, err)
		}
		keys := r.owners[e.Owner]
		if keys == nil {
			keys = map[string]*liveKey{}
			r.owners[e.Owner] = keys
		}
		changed := false
		if old := keys[p.Name]; old != nil {
			if old.fp == fp {
				// A new description, or the same public key sent again:
				// the key is what it was, expired or not.
				return false, nil
			}
			// The public key is replaced: the old one is gone.
			changed = r.retire(old)
		}
		keys[p.Name] = &liveKey{fp: fp}
		return r.register(fp) || changed, nil
	case domain.TypeKeyDeleted:
		var p domain.KeyDeleted
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		k := r.owners[e.Owner][p.Name]
		if k == nil {
			// Retired already: its instance was removed.
			return false, nil
		}
		r.forget(e.Owner, p.Name)
		return r.retire(k), nil
	case domain.TypeKeyExpired:
		var p domain.KeyExpired
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		k := r.owners[e.Owner][p.Name]
		if k == nil {
			return false, nil
		}
		// The key stays with its owner, shown as expired, until deleted;
		// it no longer counts as live.
		changed := r.retire(k)
		k.expired = true
		return changed, nil
	case domain.TypeInstanceRemoved:
		changed := false
		for _, k := range r.owners[e.Owner] {
			changed = r.retire(k) || changed
		}
		delete(r.owners, e.Owner)
		return changed, nil
	case domain.TypeCAKeyCreated:
		var p domain.CAKeyCreated
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(p.PublicKey))
		if err != nil {
			return false, fmt.Errorf("CAKeyCreated %s: public key: %w", e.ID, err)
		}
		r.cas[p.ID] = &caRevocations{key: key, serials: map[uint64]struct{}{}}
		return false, nil
	case domain.TypeCAKeyRetired:
		var p domain.CAKeyRetired
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		ca := r.cas[p.ID]
		delete(r.cas, p.ID)
		return ca != nil && len(ca.serials) > 0, nil
	case domain.TypeCertificateRevoked:
		var p domain.CertificateRevoked
		if err := e.Decode(&p); err != nil {
			return false, err
		}
		ca := r.cas[p.CAKeyID]
		if ca == nil || p.Serial == 0 {
			// Its CA key is retired: untrusted, the certificate with it.
			// Serial 0 is never issued.
			return false, nil
		}
		if _, dup := ca.serials[p.Serial]; dup {
			return false, nil
		}
		ca.serials[p.Serial] = struct{}{}
		return true, nil
	}
	return false, nil
}

// register counts a live registration of fp, which is then not revoked,
// and reports whether the list changed.
func (r *Revocations) register(fp [sha256.Size]byte) bool {
	r.live[fp]++
	if _, ok := r.revoked[fp]; ok {
		delete(r.revoked, fp)
		return true
	}
	return false
}

// retire ends k's registration: its fingerprint is revoked unless it is
// live elsewhere. It reports whether the list changed.
func (r *Revocations) retire(k *liveKey) bool {
	if k.expired {
		return false // retired when it expired
	}
	k.expired = true
	if n := r.live[k.fp] - 1; n > 0 {
		r.live[k.fp] = n
		return false
	}
	delete(r.live, k.fp)
	if _, ok := r.revoked[k.fp]; ok {
		return false
	}
	r.revoked[k.fp] = struct{}{}
	return true
}

// forget drops owner's key name from the live keys.
func (r *Revocations) forget(owner domain.Owner, name string) {
	keys := r.owners[owner]
	delete(keys, name)
	if len(keys) == 0 {
		delete(r.owners, owner)
	}
}

// keyFingerprint returns the SHA256 hash of a key's wire form, from its
// recorded fingerprint ("SHA256:<base64>"), or from the key itself when
// an event lacks the fingerprint.
func keyFingerprint(recorded, key string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	if b64, ok := strings.CutPrefix(recorded, "SHA256:"); ok {
		h, err := base64.RawStdEncoding.DecodeString(b64)
		if err == nil && len(h) == sha256.Size {
			return [sha256.Size]byte(h), nil
		}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
	if err != nil {
		return fp, fmt.Errorf("no SHA256 fingerprint and the key does not parse: %w", err)
	}
	return sha256.Sum256(pub.Marshal()), nil
}

// encode writes the list as it stands.
func (r *Revocations) encode() error {
	k := krl.KRL{Version: r.version, Generated: r.date, Comment: krlComment}
	entries := len(r.revoked)
	for _, ca := range r.cas {
		if len(ca.serials) == 0 {
			continue
		}
		serials := make([]uint64, 0, len(ca.serials))
		for s := range ca.serials {
			serials = append(serials, s)
		}
		slices.Sort(serials)
		cr := krl.CertificateRevocations{CA: ca.key}
		for _, s := range serials {
			if n := len(cr.Serials); n > 0 && cr.Serials[n-1].Last+1 == s {
				cr.Serials[n-1].Last = s
				continue
			}
			cr.Serials = append(cr.Serials, krl.SerialRange{First: s, Last: s})
		}
		k.Certificates = append(k.Certificates, cr)
		entries += len(serials)
	}
	k.SHA256 = make([][sha256.Size]byte, 0, len(r.revoked))
	for fp := range r.revoked {
		k.SHA256 = append(k.SHA256, fp)
	}
	data, err := k.MarshalBinary()
	if err != nil {
		return fmt.Errorf("projections: encode the revocation list: %w", err)
	}
	r.encoded, r.encodedVersion, r.entries = data, r.version, entries
	return nil
}
