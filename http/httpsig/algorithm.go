package httpsig

import (
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"strings"
)

// algorithm is a parsed "<family>-<hash>" name such as "rsa-sha256".
type algorithm struct {
	family string // "rsa", "ecdsa" or "ed25519"
	hash   crypto.Hash
}

// parseAlgorithm accepts exactly the algorithms CloudAPI accepts, minus the
// long obsolete dsa.
func parseAlgorithm(name string) (algorithm, error) {
	family, hashName, _ := strings.Cut(strings.ToLower(name), "-")
	hashes := map[string]crypto.Hash{
		"sha1":   crypto.SHA1,
		"sha256": crypto.SHA256,
		"sha384": crypto.SHA384,
		"sha512": crypto.SHA512,
	}
	h, ok := hashes[hashName]
	switch {
	case !ok:
	case family == "rsa":
		return algorithm{family, h}, nil
	case family == "ecdsa" && h != crypto.SHA1:
		return algorithm{family, h}, nil
	case family == "ed25519" && h == crypto.SHA512:
		return algorithm{family, h}, nil
	}
	return algorithm{}, fmt.Errorf("httpsig: unsupported algorithm %q", name)
}

// digest hashes msg. The hash functions are called directly rather than
// through crypto.Hash.New so nothing depends on which packages happen to
// register themselves.
func (a algorithm) digest(msg string) []byte {
	switch a.hash {
	case crypto.SHA1:
		d := sha1.Sum([]byte(msg))
		return d[:]
	case crypto.SHA256:
		d := sha256.Sum256([]byte(msg))
		return d[:]
	case crypto.SHA384:
		d := sha512.Sum384([]byte(msg))
		return d[:]
	default:
		d := sha512.Sum512([]byte(msg))
		return d[:]
	}
}
