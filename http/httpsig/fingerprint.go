package httpsig

import "golang.org/x/crypto/ssh"

// KeyIDFor returns the keyId CloudAPI clients send for pub on behalf of
// login: "/<login>/keys/<md5 fingerprint>".
func KeyIDFor(login string, pub ssh.PublicKey) string {
	return "/" + login + "/keys/" + MD5Fingerprint(pub)
}

// MD5Fingerprint returns the legacy colon-separated, lowercase MD5
// fingerprint of pub ("aa:bb:..."), without the "MD5:" prefix that
// ssh-keygen prints, because that is the form CloudAPI uses in key ids.
func MD5Fingerprint(pub ssh.PublicKey) string {
	return ssh.FingerprintLegacyMD5(pub)
}
