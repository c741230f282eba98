package projections

import (
	"container/list"
	"sync"
)

// stateCache keeps recently used owner states in memory, each with the
// log position it reflects (the owner's last stream sequence when it was
// computed). A state is a pure function of the owner's events up to that
// position, so a cached state never goes wrong, it only falls behind: a
// load asks the stream's leader for the owner's events after the cached
// version (one round trip, none when there are none) and applies them.
//
// Cached states are shared by every reader and must never be changed: a
// state is advanced by applying events to a clone (docStore.advance), and
// the domain's decisions only read the state they are given.
//
// The cache is bounded by the approximate bytes of the states it holds
// (each kind's size function estimates them), least recently used first
// out; a state larger than the whole budget is not kept.
type stateCache[T any] struct {
	mu     sync.Mutex
	budget int // approximate bytes
	used   int
	order  *list.List // of *cached[T], most recently used first
	byID   map[string]*list.Element
	size   func(*T) int
}

type cached[T any] struct {
	id      string
	state   *T
	version uint64
	bytes   int
	// extended: a state was made from this one sharing its slices'
	// spare capacity (claim).
	extended bool
}

func newStateCache[T any](budget int, size func(*T) int) *stateCache[T] {
	return &stateCache[T]{budget: budget, order: list.New(), byID: map[string]*list.Element{}, size: size}
}

// get returns id's cached state and its version; ok is false when id is
// not cached.
func (c *stateCache[T]) get(id string) (state *T, version uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return nil, 0, false
	}
	c.order.MoveToFront(el)
	e := el.Value.(*cached[T])
	return e.state, e.version, true
}

// put caches state as id's state at version, unless a newer one is cached
// already (two loads racing: the later position wins).
func (c *stateCache[T]) put(id string, state *T, version uint64) {
	if state == nil {
		return // an owner without events: not worth a place
	}
	bytes := c.size(state)
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byID[id]; ok {
		e := el.Value.(*cached[T])
		if e.version >= version {
			return
		}
		c.used -= e.bytes
		c.order.Remove(el)
		delete(c.byID, id)
	}
	if bytes > c.budget {
		return
	}
	c.byID[id] = c.order.PushFront(&cached[T]{id: id, state: state, version: version, bytes: bytes})
	c.used += bytes
	for c.used > c.budget {
		el := c.order.Back()
		e := el.Value.(*cached[T])
		c.order.Remove(el)
		delete(c.byID, e.id)
		c.used -= e.bytes
	}
}

// claim reports whether the caller may make the next state of id from
// state sharing its slices' spare capacity: appending in place, beyond
// the length every reader of state sees, instead of copying every
// element (an instance with 10,000 keys would copy them all for each new
// key). Only one next state may do so, or two would write the same
// elements: the first claim of the state cached for id wins; any other
// state (an older one, one not cached) is copied.
func (c *stateCache[T]) claim(id string, state *T) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byID[id]
	if !ok {
		return false
	}
	e := el.Value.(*cached[T])
	if e.state != state || e.extended {
		return false
	}
	e.extended = true
	return true
}

// len returns how many states are cached and their approximate bytes.
func (c *stateCache[T]) len() (states, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len(), c.used
}
