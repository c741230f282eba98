package domain

import (
	"strings"
	"time"
	"unicode/utf8"
)

// expiryTimeLayout is how sshd's expiry-time option reads a time in UTC
// (the trailing Z; without it sshd reads the server's local time).
const expiryTimeLayout = "20060102150405Z"

// AuthorizedKeys renders the keys that may log in as acct, in OpenSSH's
// authorized_keys format: what sshd's AuthorizedKeysCommand prints, and
// what GitHub's https://github.com/<user>.keys serves.
//
//   - one line per key of acct not expired at now, its name as comment;
//     a key with an expiry carries expiry-time="YYYYMMDDHHMMSSZ", so that
//     a copy sshd or anyone else kept stops working on time by itself;
//   - one cert-authority line per key of userCA that is trusted, so that
//     sshd accepts the certificates keysd signs without TrustedUserCAKeys
//     (sshd still checks that a certificate names the user logging in
//     among its principals, as with TrustedUserCAKeys).
//
// userCA may be nil (no user CA keys). Every line ends in "\n"; no key
// means "".
func AuthorizedKeys(acct *Account, userCA *CA, now time.Time) string {
	var b strings.Builder
	for i := range acct.Keys {
		k := &acct.Keys[i]
		key, ok := keyFields(k.Key)
		if !ok || k.ExpiredAt(now) {
			continue
		}
		if k.Expires != nil {
			b.WriteString(`expiry-time="` + k.Expires.UTC().Format(expiryTimeLayout) + `" `)
		}
		b.WriteString(key + " " + lineComment(k.Name) + "\n")
	}
	if userCA != nil {
		for _, k := range userCA.Trusted() {
			key, ok := keyFields(k.PublicKey)
			if !ok {
				continue
			}
			b.WriteString("cert-authority " + key + " " + lineComment("keysd "+userCA.Name+" CA "+k.ID) + "\n")
		}
	}
	return b.String()
}

// keyFields returns "type base64" of an OpenSSH public key line, without
// the comment it was submitted with (the key's name replaces it).
func keyFields(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 2 {
		return "", false
	}
	return f[0] + " " + f[1], true
}

// lineComment returns name as it can stand as the comment that ends an
// authorized_keys line. ValidateKeyName refuses every character that
// could end the line or hide in it (control, format and line separator
// characters, broken UTF-8); names recorded before a rule existed, or
// by a writer that skipped it, must not break the line or add one all
// the same, so such characters become '?' here.
func lineComment(name string) string {
	if utf8.ValidString(name) && strings.IndexFunc(name, invisible) < 0 {
		return name
	}
	var b strings.Builder
	for i, r := range name {
		if r == utf8.RuneError && !strings.HasPrefix(name[i:], string(utf8.RuneError)) || invisible(r) {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
