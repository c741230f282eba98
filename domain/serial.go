package domain

import (
	"context"
	"math"
	"sync"
)

// OwnerSerials is the owner kind of certificate serial counters. There is
// one owner, SerialsSSH: every CA key's certificates draw from it, so a
// serial names one certificate of keysd, whichever CA key signed it.
const OwnerSerials = "serials"

// SerialsSSH is the id of the serial counter of SSH certificates.
const SerialsSSH = "ssh-certificates"

// SerialBlockReserved records that one keysd replica took the serials
// First to Last (inclusive) for the certificates it signs. Blocks never
// overlap: each is decided against the one before it, with optimistic
// concurrency on the counter's subject. Serials of a block that a
// replica did not use before it stopped are never used. Schema version 1.
type SerialBlockReserved struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// SerialCounter is the state of a serial counter: the first serial no
// block has taken yet.
type SerialCounter struct {
	Next    uint64 `json:"next"`
	Version uint64 `json:"version"`
}

// SerialsOwner is the owner of the SSH certificate serial counter.
func SerialsOwner() Owner { return Owner{Kind: OwnerSerials, ID: SerialsSSH} }

// Reserve decides taking the next n serials. Serial 0 is never handed
// out: OpenSSH's revocation lists read it as "no serial".
func (s *SerialCounter) Reserve(n uint64, m Meta) (Event, error) {
	first := max(s.Next, 1)
	if n == 0 || first > math.MaxUint64-n {
		return Event{}, Errorf(EUNAVAILABLE, "certificate serials are exhausted")
	}
	return NewEvent(SerialsOwner(), SerialBlockReserved{First: first, Last: first + n - 1}, m), nil
}

// ApplySerialEvent returns the counter after e, stored at seq.
func ApplySerialEvent(s *SerialCounter, e Event, seq uint64) (*SerialCounter, error) {
	if s == nil {
		s = &SerialCounter{Next: 1}
	}
	if seq <= s.Version {
		return s, nil
	}
	if e.Type == TypeSerialBlockReserved {
		var p SerialBlockReserved
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		// A block is decided against the counter, so it starts at Next;
		// max keeps a forged or reordered block from moving it back.
		s.Next = max(s.Next, p.Last+1)
	}
	s.Version = seq
	return s, nil
}

// SerialRepository loads and appends the events of the serial counter.
type SerialRepository interface {
	LoadSerials(ctx context.Context) (*SerialCounter, error) // never nil
	AppendSerials(ctx context.Context, expected uint64, events []Event) (*SerialCounter, error)
}

// serialCounters is the Repository of the serial counter repo provides
// (there is one, SerialsSSH).
func serialCounters(repo SerialRepository) Repository[*SerialCounter] {
	return repository(
		func(ctx context.Context, _ string) (*SerialCounter, error) { return repo.LoadSerials(ctx) },
		func(ctx context.Context, _ string, expected uint64, events []Event) (*SerialCounter, error) {
			return repo.AppendSerials(ctx, expected, events)
		},
		func(c *SerialCounter) uint64 { return c.Version })
}

// DefaultSerialBlock is how many serials a replica reserves at once: one
// append per that many certificates.
const DefaultSerialBlock = 1000

// Serials hands out certificate serials from blocks this process
// reserved: unique across replicas and restarts, without an append per
// certificate. Safe for concurrent use.
type Serials struct {
	Repo SerialRepository
	// Block is the number of serials reserved at once; 0 means
	// DefaultSerialBlock.
	Block uint64

	mu         sync.Mutex
	next, last uint64 // the rest of the current block; empty when next > last
}

// Next returns a serial no other certificate has, reserving a new block
// when this process's block is used up.
func (s *Serials) Next(ctx context.Context, m Meta) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == 0 || s.next > s.last {
		block := s.Block
		if block == 0 {
			block = DefaultSerialBlock
		}
		var reserved SerialBlockReserved
		_, err := Execute(ctx, serialCounters(s.Repo), SerialsOwner(), nil,
			func(c *SerialCounter) ([]Event, error) {
				ev, err := c.Reserve(block, m)
				if err != nil {
					return nil, err
				}
				return []Event{ev}, ev.Decode(&reserved)
			})
		if err != nil {
			// An append whose outcome is unknown may have taken the block:
			// it is not used, which leaves a gap, never a repeat.
			return 0, err
		}
		s.next, s.last = reserved.First, reserved.Last
	}
	serial := s.next
	s.next++
	return serial, nil
}
