package domain

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// PublicKey is a validated OpenSSH public key as accepted for account keys.
type PublicKey struct {
	Key               ssh.PublicKey
	Type              string // e.g. "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "sk-ssh-ed25519@openssh.com"
	Bits              int    // RSA modulus bits, ECDSA curve bits, 256 for ed25519
	Comment           string
	Fingerprint       string // lowercase colon-separated MD5, without "MD5:", as CloudAPI shows it
	FingerprintSHA256 string // "SHA256:...", as ssh-keygen shows it
	Authorized        string // canonical "type base64 [comment]", one line, no newline
}

// minRSABits is the smallest RSA modulus accepted: shorter keys are within
// reach of well-funded attackers.
const minRSABits = 2048

// acceptedTypes maps each accepted key type to its size in bits; RSA sizes
// come from the key itself.
var acceptedTypes = map[string]int{
	ssh.KeyAlgoRSA:        0,
	ssh.KeyAlgoECDSA256:   256,
	ssh.KeyAlgoECDSA384:   384,
	ssh.KeyAlgoECDSA521:   521,
	ssh.KeyAlgoED25519:    256,
	ssh.KeyAlgoSKECDSA256: 256,
	ssh.KeyAlgoSKED25519:  256,
}

// acceptedList is told to users whose key has another type.
const acceptedList = "use ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa of at least 2048 bits, " +
	"sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com"

// otherTypes are key types that are refused but that error messages may
// name, as may acceptedTypes and their certificates: they are our words, not
// the caller's, so naming them echoes none of the input.
var otherTypes = []string{
	ssh.InsecureKeyAlgoDSA,
	ssh.KeyAlgoMLDSA44,
	ssh.KeyAlgoMLDSA65,
	ssh.KeyAlgoMLDSA87,
	ssh.KeyAlgoRSASHA256,
	ssh.KeyAlgoRSASHA512,
}

// certSuffix ends the type names of OpenSSH certificates.
const certSuffix = "-cert-v01@openssh.com"

// knownType reports whether t is a key or certificate type we know by name.
func knownType(t string) bool {
	if base, ok := strings.CutSuffix(t, certSuffix); ok {
		t = base
		if _, ok := acceptedTypes[base+"@openssh.com"]; ok {
			return true
		}
	}
	_, accepted := acceptedTypes[t]
	return accepted || slices.Contains(otherTypes, t)
}

// ParsePublicKey validates s as exactly one OpenSSH public key line,
// "type base64 [comment]", of a type and size accepted for account keys.
// Every refusal is an EINVALID error whose message starts with "key is
// invalid: " and gives the reason; messages never repeat the input, which
// may be a private key pasted by mistake.
func ParsePublicKey(s string) (*PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, invalidKey("the key is empty")
	}
	var lines []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	// Foreign formats first: a private key spans several lines, and its
	// message must win over any other.
	for _, line := range lines {
		if reason := foreignFormat(line); reason != "" {
			return nil, invalidKey("%s", reason)
		}
	}
	if len(lines) > 1 {
		n := 0
		for _, line := range lines {
			if lineHoldsKey(line) {
				n++
			}
		}
		if n > 1 {
			return nil, invalidKey("found %d keys, but only one key at a time is accepted", n)
		}
		return nil, invalidKey("the text has several lines, but an OpenSSH public key is a single line")
	}
	return parseKeyLine(lines[0])
}

// foreignFormat returns why line belongs to a key format other than an
// OpenSSH public key line, or "" if it does not look like one.
func foreignFormat(line string) string {
	const private = "this looks like a private key; only the public half is accepted " +
		"(the contents of the .pub file, such as ~/.ssh/id_ed25519.pub)"
	switch {
	case strings.HasPrefix(line, "-----BEGIN"):
		if strings.Contains(line, "RSA PUBLIC KEY") {
			return "this is a PEM public key, not an OpenSSH one; convert it with ssh-keygen -i -m PEM -f FILE"
		}
		if strings.Contains(line, "PUBLIC KEY") {
			return "this is a PEM public key, not an OpenSSH one; convert it with ssh-keygen -i -m PKCS8 -f FILE"
		}
		return private
	case strings.HasPrefix(line, "---- BEGIN SSH2 PUBLIC KEY"):
		return "this is an RFC 4716 (SSH2) public key, not an OpenSSH one; convert it with ssh-keygen -i -f FILE"
	case strings.HasPrefix(line, "---- BEGIN"),
		strings.HasPrefix(line, "PuTTY-User-Key-File-"),
		strings.HasPrefix(line, "b3BlbnNzaC1rZXktdjE"): // base64 of "openssh-key-v1", a private key without its header
		return private
	}
	return ""
}

// parseKeyLine parses one trimmed, non-empty line.
func parseKeyLine(line string) (*PublicKey, error) {
	typ, rest := cutField(line)
	data, rest := cutField(rest)
	comment := strings.TrimSpace(rest)

	blob, blobType, err := decodeBlob(data)
	if (err != nil || blobType != typ) && !knownType(typ) {
		if remainder, ok := skipOptions(line); ok && lineStartsWithKey(remainder) {
			return nil, invalidKey("authorized_keys options before the key (such as no-pty or command=) are not accepted; submit the key alone")
		}
	}
	switch {
	case data == "" && knownType(typ):
		return nil, invalidKey("the key data after the key type is missing")
	case data == "":
		return nil, invalidKey("this is not an OpenSSH public key; expected \"type base64 [comment]\" on one line")
	case err != nil && knownType(typ):
		return nil, invalidKey("the key data is not valid: %s", err.Error())
	case err != nil:
		return nil, invalidKey("this is not an OpenSSH public key; expected \"type base64 [comment]\" on one line")
	case blobType != typ && knownType(typ) && knownType(blobType):
		return nil, invalidKey("the key type %s does not match the key data, which holds a %s key", typ, blobType)
	case blobType != typ:
		return nil, invalidKey("the key type does not match the key data")
	}

	if lineHoldsKey(comment) {
		return nil, invalidKey("found 2 keys on one line, but only one key at a time is accepted")
	}

	switch _, accepted := acceptedTypes[typ]; {
	case strings.HasSuffix(typ, certSuffix):
		return nil, invalidKey("certificates are not accepted; submit the plain public key")
	case typ == ssh.InsecureKeyAlgoDSA:
		return nil, invalidKey("DSA (ssh-dss) keys are insecure and not accepted; %s", acceptedList)
	case !accepted && knownType(typ):
		return nil, invalidKey("%s keys are not accepted; %s", typ, acceptedList)
	case !accepted:
		return nil, invalidKey("this key type is not supported; %s", acceptedList)
	}

	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		// The parser's own message may quote the input; say only what failed.
		return nil, invalidKey("the %s key data is malformed", typ)
	}
	bits := acceptedTypes[typ]
	if typ == ssh.KeyAlgoRSA {
		var pub *rsa.PublicKey
		if k, ok := key.(ssh.CryptoPublicKey); ok {
			pub, _ = k.CryptoPublicKey().(*rsa.PublicKey)
		}
		if pub == nil {
			return nil, invalidKey("the %s key data is malformed", typ)
		}
		bits = pub.N.BitLen()
		if bits < minRSABits {
			return nil, invalidKey("RSA keys must have at least %d bits, this one has %d", minRSABits, bits)
		}
	}

	if !validComment(comment) {
		return nil, invalidKey("the comment after the key must be printable UTF-8 text")
	}

	authorized := typ + " " + base64.StdEncoding.EncodeToString(key.Marshal())
	if comment != "" {
		authorized += " " + comment
	}
	return &PublicKey{
		Key:               key,
		Type:              typ,
		Bits:              bits,
		Comment:           comment,
		Fingerprint:       ssh.FingerprintLegacyMD5(key),
		FingerprintSHA256: ssh.FingerprintSHA256(key),
		Authorized:        authorized,
	}, nil
}

// invalidKey returns the EINVALID error for a refused key. Its message
// starts with "key is invalid", which is all CloudAPI ever said, so clients
// matching that text keep working.
func invalidKey(format string, args ...any) *Error {
	return Errorf(EINVALID, "key is invalid: "+format, args...)
}

// cutField splits s after its first space- or tab-separated field.
func cutField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " \t")
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// decodeBlob decodes the base64 field of a key line and returns the blob
// and the key type written inside it. Errors say what is wrong without
// quoting the data.
func decodeBlob(data string) (blob []byte, typ string, err error) {
	blob, err = base64.StdEncoding.DecodeString(data)
	if err != nil && !strings.HasSuffix(data, "=") {
		// Some tools drop the padding; the key is no less valid.
		blob, err = base64.RawStdEncoding.DecodeString(data)
	}
	if err != nil {
		return nil, "", errors.New("it is not base64")
	}
	if len(blob) < 4 {
		return nil, "", errors.New("it is too short")
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) {
		return nil, "", errors.New("it is truncated")
	}
	return blob, string(blob[4 : 4+n]), nil
}

// lineStartsWithKey reports whether s begins with a key type followed by
// base64 data that holds a key of that type.
func lineStartsWithKey(s string) bool {
	typ, rest := cutField(s)
	data, _ := cutField(rest)
	_, blobType, err := decodeBlob(data)
	return err == nil && typ != "" && blobType == typ
}

// lineHoldsKey reports whether any field of s starts a key, wherever it is.
func lineHoldsKey(s string) bool {
	for rest := s; strings.TrimSpace(rest) != ""; {
		if lineStartsWithKey(rest) {
			return true
		}
		_, rest = cutField(rest)
	}
	return false
}

// skipOptions returns what follows the authorized_keys options at the start
// of line, honouring double quotes as sshd does (command="a b" is one
// option), and false if the quotes never close.
func skipOptions(line string) (string, bool) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && quoted && i+1 < len(line):
			i++
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return strings.TrimLeft(line[i:], " \t"), true
		}
	}
	return "", false
}

// validComment reports whether a comment is printable UTF-8: it may become
// the key's name and is served back inside JSON, where control characters
// and broken UTF-8 would not survive unchanged.
func validComment(c string) bool {
	if !utf8.ValidString(c) {
		return false
	}
	for _, r := range c {
		if r != '\t' && !unicode.IsGraphic(r) {
			return false
		}
	}
	return true
}
