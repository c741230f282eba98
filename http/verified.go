package http

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// verifiedSignatures remembers HTTP Signatures that verified, so that the
// same signature over the same signing string under the same key is not
// verified again. A client signs the Date (whole seconds) and the request
// line: every request it makes for one path within a second carries the
// same signature, and verifying it (ed25519, RSA) is most of what a read
// costs keysd. Whether a signature verifies depends on nothing but the
// key, the algorithm, the signing string and the signature, so a
// remembered success is as good as a new one; everything else about the
// request (the key still registered, not expired, the account's policy,
// the date within the clock skew) is checked on every request as before.
// Failures are not remembered.
//
// An entry is kept until its Date leaves the allowed clock skew, after
// which no request can use it. Memory is bounded by maxVerified entries
// of 32 bytes of hash and a time each (about 2 MB); when full, expired
// entries go first, then arbitrary ones (a miss only costs a verify).
type verifiedSignatures struct {
	mu   sync.Mutex
	seen map[[sha256.Size]byte]time.Time // until when each may be used
}

const maxVerified = 32 << 10

// signatureID identifies a verification: the key (its authorized_keys
// line), the algorithm, the signing string and the signature, each
// length-prefixed so that no two different verifications share an ID.
func signatureID(key, alg, signing, signature string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, s := range [...]string{key, alg, signing, signature} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

// verified reports whether the verification id succeeded before and may
// still be used at now.
func (v *verifiedSignatures) verified(id [sha256.Size]byte, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	until, ok := v.seen[id]
	return ok && now.Before(until)
}

// add remembers that verification id succeeded, usable until until.
func (v *verifiedSignatures) add(id [sha256.Size]byte, until, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = make(map[[sha256.Size]byte]time.Time)
	}
	if len(v.seen) >= maxVerified {
		for k, u := range v.seen {
			if !now.Before(u) {
				delete(v.seen, k)
			}
		}
		for k := range v.seen {
			if len(v.seen) < maxVerified*3/4 {
				break
			}
			delete(v.seen, k)
		}
	}
	v.seen[id] = until
}
