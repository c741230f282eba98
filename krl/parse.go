package krl

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/crypto/ssh"
)

// Parse reads a KRL in the binary format and returns its content in
// canonical form. It refuses what OpenSSH refuses, so a list Parse accepts
// is one sshd loads; it also refuses signature sections (OpenSSH 9.4 and
// later do) and explicit keys of a type golang.org/x/crypto/ssh does not
// know. Extension sections not marked critical are skipped.
func Parse(b []byte) (*KRL, error) {
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, errors.New("krl: not a KRL (bad magic)")
	}
	r := reader{b: b[len(magic):]}
	if v := r.u32(); r.err == nil && v != formatVersion {
		return nil, fmt.Errorf("krl: unsupported format version %d", v)
	}
	k := &KRL{Version: r.u64()}
	generated := r.u64()
	r.u64() // flags: none defined
	r.string()
	k.Comment = r.cstring()
	if r.err != nil {
		return nil, fmt.Errorf("krl: header: %w", r.err)
	}
	if generated > math.MaxInt64 {
		return nil, fmt.Errorf("krl: generated date %d is out of range", generated)
	}
	if generated != 0 {
		k.Generated = time.Unix(int64(generated), 0).UTC()
	}
	for len(r.b) > 0 {
		typ := r.byte()
		s := reader{b: r.string()}
		if r.err != nil {
			return nil, fmt.Errorf("krl: section %d: %w", typ, r.err)
		}
		switch typ {
		case sectionCertificates:
			cr, err := parseCertificates(&s)
			if err != nil {
				return nil, err
			}
			k.Certificates = append(k.Certificates, cr)
		case sectionExplicitKey:
			for len(s.b) > 0 && s.err == nil {
				blob := s.string()
				if s.err != nil {
					break
				}
				key, err := ssh.ParsePublicKey(blob)
				if err != nil {
					return nil, fmt.Errorf("krl: explicit key: %w", err)
				}
				k.Keys = append(k.Keys, key)
			}
		case sectionSHA1:
			for len(s.b) > 0 && s.err == nil {
				k.SHA1 = append(k.SHA1, [sha1.Size]byte(s.hash(sha1.Size)))
			}
		case sectionSHA256:
			for len(s.b) > 0 && s.err == nil {
				k.SHA256 = append(k.SHA256, [sha256.Size]byte(s.hash(sha256.Size)))
			}
		case sectionSignature:
			return nil, errors.New("krl: signed KRLs are not supported (OpenSSH 9.4 and later refuse them too)")
		case sectionExtension:
			s.extension()
		default:
			return nil, fmt.Errorf("krl: unknown section type %d", typ)
		}
		if s.err == nil && len(s.b) > 0 {
			s.err = errors.New("trailing data")
		}
		if s.err != nil {
			return nil, fmt.Errorf("krl: section %d: %w", typ, s.err)
		}
	}
	return k.canonical()
}

// parseCertificates reads the body of a certificates section.
func parseCertificates(s *reader) (CertificateRevocations, error) {
	var cr CertificateRevocations
	if blob := s.string(); len(blob) > 0 && s.err == nil {
		ca, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return cr, fmt.Errorf("krl: CA key: %w", err)
		}
		cr.CA = ca
	}
	s.string() // reserved
	for len(s.b) > 0 && s.err == nil {
		typ := s.byte()
		sub := reader{b: s.string()}
		if s.err != nil {
			break
		}
		switch typ {
		case certSerialList:
			for len(sub.b) > 0 && sub.err == nil {
				v := sub.u64()
				cr.Serials = append(cr.Serials, SerialRange{v, v})
			}
		case certSerialRange:
			first, last := sub.u64(), sub.u64()
			cr.Serials = append(cr.Serials, SerialRange{first, last})
		case certSerialBitmap:
			var err error
			cr.Serials, err = sub.bitmap(cr.Serials)
			if err != nil {
				sub.err = err
			}
		case certKeyID:
			for len(sub.b) > 0 && sub.err == nil {
				cr.KeyIDs = append(cr.KeyIDs, sub.cstring())
			}
		case certExtension:
			sub.extension()
		default:
			return cr, fmt.Errorf("krl: unknown certificate subsection type %#x", typ)
		}
		if sub.err == nil && len(sub.b) > 0 {
			sub.err = errors.New("trailing data")
		}
		if sub.err != nil {
			return cr, fmt.Errorf("krl: certificate subsection %#x: %w", typ, sub.err)
		}
	}
	if s.err != nil {
		return cr, fmt.Errorf("krl: certificates section: %w", s.err)
	}
	return cr, nil
}

// reader consumes SSH wire encodings from b; after the first error every
// read returns zero values and err stays set.
type reader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("truncated")

func (r *reader) take(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errTruncated
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) string() []byte {
	n := r.u32()
	return r.take(uint64(n))
}

// cstring reads a string as OpenSSH reads one into a C string: a NUL may
// only end it, and is then dropped.
func (r *reader) cstring() string {
	v := r.string()
	if i := bytes.IndexByte(v, 0); i >= 0 {
		if i < len(v)-1 {
			r.err = errors.New("string contains a NUL byte")
		}
		v = v[:i]
	}
	return string(v)
}

func (r *reader) hash(size int) []byte {
	v := r.string()
	if r.err == nil && len(v) != size {
		r.err = fmt.Errorf("hash of %d bytes, want %d", len(v), size)
	}
	if r.err != nil {
		return make([]byte, size)
	}
	return v
}

// extension reads an extension (section or certificate subsection): a
// name, a critical flag and contents. No extension is understood, so a
// critical one is an error and any other is skipped, as in OpenSSH.
func (r *reader) extension() {
	name := r.cstring()
	critical := r.byte()
	r.string()
	if r.err == nil && critical != 0 {
		r.err = fmt.Errorf("unsupported critical extension %q", name)
	}
}

// bitmap reads a serial bitmap (offset and mpint) and appends the serials
// it revokes to rs, with OpenSSH's checks: the mpint is positive and at
// most maxBitmapBits wide, and no revoked serial is 0 or past 2^64-1.
func (r *reader) bitmap(rs []SerialRange) ([]SerialRange, error) {
	offset := r.u64()
	v := r.string()
	if r.err != nil {
		return rs, nil
	}
	if len(v) > 0 && v[0]&0x80 != 0 {
		return rs, errors.New("bitmap is a negative mpint")
	}
	if len(v) > maxBitmapBits/8+1 || (len(v) == maxBitmapBits/8+1 && v[0] != 0) {
		return rs, fmt.Errorf("bitmap wider than %d bits", maxBitmapBits)
	}
	for i := range len(v) * 8 {
		// Bit i counts from the least significant bit of the last byte.
		if v[len(v)-1-i/8]&(1<<(i%8)) == 0 {
			continue
		}
		s := offset + uint64(i)
		if s < offset {
			return rs, errors.New("bitmap runs past serial 2^64-1")
		}
		if n := len(rs); n > 0 && s != 0 && rs[n-1].Last+1 == s {
			rs[n-1].Last = s
		} else {
			rs = append(rs, SerialRange{s, s})
		}
	}
	return rs, nil
}
