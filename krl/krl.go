package krl

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Section types of the format (see the package comment).
const (
	magic         = "SSHKRL\n\x00"
	formatVersion = 1

	sectionCertificates = 1
	sectionExplicitKey  = 2
	sectionSHA1         = 3
	sectionSignature    = 4
	sectionSHA256       = 5
	sectionExtension    = 255

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39
)

// KRL is the content of a key revocation list.
type KRL struct {
	// Version numbers the list; each new list should have a higher one.
	Version uint64
	// Generated is when the list was made, to the second. The zero Time is
	// written as 0 (1970-01-01), and Parse reads 0 as the zero Time.
	Generated time.Time
	// Comment is free text; it must not contain a NUL byte.
	Comment string
	// Certificates revokes certificates, per CA.
	Certificates []CertificateRevocations
	// Keys revokes plain public keys (and every certificate of those keys,
	// and every certificate those keys signed as a CA). A certificate given
	// here revokes the key it certifies.
	Keys []ssh.PublicKey
	// SHA1 and SHA256 revoke plain public keys by the hash of their wire
	// form: sha1.Sum(key.Marshal()), sha256.Sum256(key.Marshal()).
	SHA1   [][sha1.Size]byte
	SHA256 [][sha256.Size]byte
}

// CertificateRevocations revokes certificates signed by one CA, by serial
// or by key ID.
type CertificateRevocations struct {
	// CA is the CA's public key; nil means certificates of any CA.
	CA ssh.PublicKey
	// Serials lists the revoked serials, as inclusive ranges. Serial 0
	// cannot be revoked this way: OpenSSH reads it as "no serial".
	Serials []SerialRange
	// KeyIDs lists revoked certificate key IDs (exact match); they must not
	// contain a NUL byte.
	KeyIDs []string
}

// SerialRange is the inclusive range of serials First..Last.
type SerialRange struct {
	First, Last uint64
}

// MarshalBinary writes k in the KRL binary format, canonically: the same
// content always gives the same bytes (see the package comment).
func (k *KRL) MarshalBinary() ([]byte, error) {
	c, err := k.canonical()
	if err != nil {
		return nil, err
	}
	var generated uint64
	if !c.Generated.IsZero() {
		generated = uint64(c.Generated.Unix())
	}
	b := make([]byte, 0, c.sizeHint())
	b = append(b, magic...)
	b = appendU32(b, formatVersion)
	b = appendU64(b, c.Version)
	b = appendU64(b, generated)
	b = appendU64(b, 0) // flags
	b = appendString(b, nil)
	b = appendString(b, []byte(c.Comment))

	var sect []byte
	for _, cr := range c.Certificates {
		sect = appendCertificates(sect[:0], cr)
		b = appendSection(b, sectionCertificates, sect)
	}
	if len(c.Keys) > 0 {
		sect = sect[:0]
		for _, key := range c.Keys {
			sect = appendString(sect, key.Marshal())
		}
		b = appendSection(b, sectionExplicitKey, sect)
	}
	if len(c.SHA1) > 0 {
		sect = sect[:0]
		for _, h := range c.SHA1 {
			sect = appendString(sect, h[:])
		}
		b = appendSection(b, sectionSHA1, sect)
	}
	if len(c.SHA256) > 0 {
		sect = sect[:0]
		for _, h := range c.SHA256 {
			sect = appendString(sect, h[:])
		}
		b = appendSection(b, sectionSHA256, sect)
	}
	return b, nil
}

// appendCertificates appends the body of a certificates section.
func appendCertificates(b []byte, cr CertificateRevocations) []byte {
	var ca []byte
	if cr.CA != nil {
		ca = cr.CA.Marshal()
	}
	b = appendString(b, ca)
	b = appendString(b, nil) // reserved
	b = appendSerials(b, cr.Serials)
	if len(cr.KeyIDs) > 0 {
		var ids []byte
		for _, id := range cr.KeyIDs {
			ids = appendString(ids, []byte(id))
		}
		b = appendSection(b, certKeyID, ids)
	}
	return b
}

// canonical returns a copy of k in canonical form, or every problem with
// its content.
func (k *KRL) canonical() (*KRL, error) {
	var errs []error
	if strings.ContainsRune(k.Comment, 0) {
		errs = append(errs, errors.New("krl: comment contains a NUL byte"))
	}
	if !k.Generated.IsZero() && k.Generated.Unix() < 0 {
		errs = append(errs, fmt.Errorf("krl: generated date %s is before 1970", k.Generated))
	}
	c := &KRL{Version: k.Version, Comment: k.Comment}
	if !k.Generated.IsZero() {
		c.Generated = time.Unix(k.Generated.Unix(), 0).UTC()
	}

	byCA := map[string]*CertificateRevocations{}
	for i, cr := range k.Certificates {
		var caBlob string
		if cr.CA != nil {
			if _, ok := cr.CA.(*ssh.Certificate); ok {
				errs = append(errs, fmt.Errorf("krl: certificates[%d]: the CA key is a certificate; give the CA's plain key", i))
				continue
			}
			caBlob = string(cr.CA.Marshal())
		}
		m := byCA[caBlob]
		if m == nil {
			m = &CertificateRevocations{CA: cr.CA}
			byCA[caBlob] = m
		}
		for _, s := range cr.Serials {
			if s.First == 0 || s.First > s.Last {
				errs = append(errs, fmt.Errorf("krl: certificates[%d]: serial range %d-%d: serials start at 1 and a range must not run backwards", i, s.First, s.Last))
				continue
			}
			m.Serials = append(m.Serials, s)
		}
		for _, id := range cr.KeyIDs {
			if strings.ContainsRune(id, 0) {
				errs = append(errs, fmt.Errorf("krl: certificates[%d]: key ID %q contains a NUL byte", i, id))
				continue
			}
			m.KeyIDs = append(m.KeyIDs, id)
		}
	}
	cas := make([]string, 0, len(byCA))
	for blob, m := range byCA {
		if len(m.Serials) > 0 || len(m.KeyIDs) > 0 {
			cas = append(cas, blob)
		}
	}
	slices.Sort(cas)
	for _, blob := range cas {
		m := byCA[blob]
		m.Serials = mergeSerials(m.Serials)
		slices.Sort(m.KeyIDs)
		m.KeyIDs = slices.Compact(m.KeyIDs)
		c.Certificates = append(c.Certificates, *m)
	}

	for i, key := range k.Keys {
		if key == nil {
			errs = append(errs, fmt.Errorf("krl: keys[%d] is nil", i))
			continue
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			key = cert.Key
		}
		c.Keys = append(c.Keys, key)
	}
	c.Keys = sortedKeys(c.Keys)

	c.SHA1 = sortedHashes(k.SHA1, func(a, b [sha1.Size]byte) int { return bytes.Compare(a[:], b[:]) })
	c.SHA256 = sortedHashes(k.SHA256, func(a, b [sha256.Size]byte) int { return bytes.Compare(a[:], b[:]) })

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// sortedKeys sorts keys by their wire form, as OpenSSH orders them, and
// drops duplicates.
func sortedKeys(keys []ssh.PublicKey) []ssh.PublicKey {
	type blobKey struct {
		blob []byte
		key  ssh.PublicKey
	}
	if len(keys) == 0 {
		return nil
	}
	bk := make([]blobKey, len(keys))
	for i, key := range keys {
		bk[i] = blobKey{key.Marshal(), key}
	}
	slices.SortFunc(bk, func(a, b blobKey) int { return bytes.Compare(a.blob, b.blob) })
	bk = slices.CompactFunc(bk, func(a, b blobKey) bool { return bytes.Equal(a.blob, b.blob) })
	out := make([]ssh.PublicKey, len(bk))
	for i := range bk {
		out[i] = bk[i].key
	}
	return out
}

// sortedHashes returns the hashes in ascending order without duplicates,
// as the format requires; nil if there are none.
func sortedHashes[H comparable](hs []H, compare func(a, b H) int) []H {
	if len(hs) == 0 {
		return nil
	}
	hs = slices.Clone(hs)
	slices.SortFunc(hs, compare)
	return slices.Compact(hs)
}

// mergeSerials sorts valid ranges and merges those that overlap or touch,
// leaving disjoint ranges with at least one unrevoked serial between them.
func mergeSerials(rs []SerialRange) []SerialRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b SerialRange) int { return cmp.Compare(a.First, b.First) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].Last == math.MaxUint64 || r.First <= out[n-1].Last+1) {
			out[n-1].Last = max(out[n-1].Last, r.Last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// sizeHint estimates the encoded size of canonical k, to allocate once.
func (k *KRL) sizeHint() int {
	n := 64 + len(k.Comment) + 24*len(k.SHA1) + 36*len(k.SHA256) + 64*len(k.Keys)
	for _, cr := range k.Certificates {
		n += 128 + 16*len(cr.Serials)
		for _, id := range cr.KeyIDs {
			n += 4 + len(id)
		}
	}
	return n
}

func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendU64(b []byte, v uint64) []byte {
	return appendU32(appendU32(b, uint32(v>>32)), uint32(v))
}

func appendString(b, s []byte) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

func appendSection(b []byte, typ byte, data []byte) []byte {
	return appendString(append(b, typ), data)
}
