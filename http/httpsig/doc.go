// Package httpsig signs and verifies HTTP Signatures the way Joyent Triton
// CloudAPI uses them: the "Signature" Authorization scheme of
// draft-cavage-http-signatures, with keys that are account SSH keys.
//
// The package only does the cryptography and the wire format. Which
// algorithms and headers a server insists on, and how much clock skew it
// tolerates, are policy and belong to the HTTP layer that calls it.
package httpsig
