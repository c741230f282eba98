// Package sealing keeps infrastructure private keys encrypted at rest with
// envelope encryption, so that destroying one small secret destroys a key.
//
// Each private key is encrypted (sealed) under its own random 256-bit data
// key. The data key is in turn encrypted (wrapped) under a master key. The
// sealed private key may travel in events, which are immutable and
// replicated; the wrapped data key is stored apart from the event log.
// Deleting the wrapped data key makes the sealed private key unreadable
// everywhere at once, including in old events and backups: this is
// crypto-shredding, the only way to forget a secret that was written to an
// append-only log.
//
// Both layers use XChaCha20-Poly1305 with random 24-byte nonces, which are
// long enough that random choice never repeats in practice. A sealed
// private key is bound by its associated data to the key it belongs to
// (id, scope, instance, name) and to its secret id, so it cannot be moved
// to another key; a
// wrapped data key is bound to its secret id and to the id of the master
// key that wraps it, so neither can the label saying which master key
// wraps it be swapped.
//
// Master keys rotate without touching the log: Rewrap re-encrypts a wrapped
// data key under the new master key, and a Keyring keeps the older master
// keys available to open what has not been rewrapped yet.
//
// Go cannot guarantee that secrets are erased from memory: the garbage
// collector may copy them, and the AEAD implementations keep their own copy
// of the key. This package clears the buffers it owns once it is done with
// them, which narrows the window but is only a best effort.
package sealing
