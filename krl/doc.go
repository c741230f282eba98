// Package krl writes and reads OpenSSH key revocation lists (KRLs), the
// binary files sshd loads with RevokedKeys and `ssh-keygen -Q` checks
// keys against.
//
// # The format
//
// Integers are big-endian; a "string" is a uint32 length and that many
// bytes. A KRL is a header followed by sections:
//
//	"SSHKRL\n\0"  magic, 8 bytes
//	uint32        format version, 1
//	uint64        KRL version (grows each time the list changes)
//	uint64        generated date, seconds since 1970-01-01 UTC
//	uint64        flags, 0
//	string        reserved, empty
//	string        comment
//	{ byte type; string data } ...
//
// The section types this package writes are:
//
//   - 1, certificates: the CA's public key in SSH wire form (empty: any
//     CA), a reserved empty string, then subsections { byte type; string
//     data } revoking certificates that CA signed:
//     0x20 a list of uint64 serials; 0x21 one range, uint64 first and
//     last; 0x22 a bitmap, uint64 offset and an mpint whose bit N revokes
//     serial offset+N; 0x23 a list of key IDs as strings.
//   - 2, explicit keys: a list of public key blobs (plain keys, not
//     certificates). A certificate of a listed key is revoked too, and so
//     is every certificate signed by a listed CA key.
//   - 3 and 5, SHA-1 and SHA-256 fingerprints: lists of the hashes (20 or
//     32 bytes) of public key blobs, in ascending order.
//
// Serial 0 cannot be revoked by serial (it means "no serial"); revoke such
// certificates by key ID. Signature sections (type 4) are not written:
// OpenSSH 9.4 and later refuse signed KRLs, and sshd reads the file from
// local disk anyway. Extension sections are not written either.
//
// # Determinism and size
//
// [KRL.MarshalBinary] first brings its input to a canonical form: one
// section per CA, CA sections ordered by the CA key's wire bytes (any-CA
// first), serials merged into disjoint, non-adjacent ranges, and key IDs,
// keys and hashes sorted and de-duplicated. The same content therefore
// always gives the same bytes. Serials are encoded with the cost model of
// ssh-keygen (`ssh-keygen -k`): per run of consecutive serials it adds
// the run to the open subsection or starts a list, a range or a bitmap,
// whichever its estimate says is smallest, so for the same content and CA
// order the output is byte for byte what ssh-keygen writes. The one
// exception is deliberate: OpenSSH cannot read a bitmap wider than 16,384
// bits (its mpint limit), yet ssh-keygen writes wider ones when many
// revoked serials lie close together (8% of a million serials makes one
// bitmap a million bits wide). Neither ssh-keygen nor sshd can load such a
// file, and sshd then takes every public key for revoked. This package
// starts a new bitmap at that width instead, for a few bytes more.
//
// [Parse] reads what OpenSSH reads (it rejects what OpenSSH rejects, such
// as serial 0, inverted ranges, oversized bitmaps, unknown section types
// and critical extensions; it skips other extensions, as OpenSSH 9.4 and
// later do) and returns the content in canonical form, so
// Parse(b).MarshalBinary() gives back b for any KRL this package wrote,
// and for one ssh-keygen wrote whose CA sections are in canonical order
// (ssh-keygen keeps the order in which CAs were first named).
package krl
