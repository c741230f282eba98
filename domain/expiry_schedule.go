package domain

import (
	"container/heap"
	"time"
)

// ExpirySchedule knows, from the events of the log, which keys are still
// to expire and when: what an expirer needs to wake at the next expiry.
// It holds one entry per key that has an expiry and is neither expired
// nor deleted, so its memory is bounded by those keys (about a hundred
// bytes each), not by the log. It is not safe for concurrent use.
type ExpirySchedule struct {
	byKey map[scheduleKey]*scheduled
	queue expiryQueue
}

// scheduleKey names a key in its owner.
type scheduleKey struct {
	owner Owner
	name  string
}

type scheduled struct {
	key     scheduleKey
	expires time.Time
	index   int // in the queue
}

// NewExpirySchedule returns an empty schedule.
func NewExpirySchedule() *ExpirySchedule {
	return &ExpirySchedule{byKey: map[scheduleKey]*scheduled{}}
}

// Len is how many keys are still to expire.
func (s *ExpirySchedule) Len() int { return len(s.queue) }

// Apply learns what e says about the expiry of its owner's keys: a key
// created (or a shared key updated) with an expiry is to expire then; one
// without, expired or deleted is not. Other events change nothing.
func (s *ExpirySchedule) Apply(e Event) error {
	switch e.Type {
	case TypeKeyCreated, TypeKeyUpdated:
		var p KeyCreated
		if err := e.Decode(&p); err != nil {
			return err
		}
		k := scheduleKey{e.Owner, p.Name}
		if p.Expires == nil {
			s.remove(k)
			return nil
		}
		s.set(k, *p.Expires)
	case TypeKeyExpired:
		var p KeyExpired
		if err := e.Decode(&p); err != nil {
			return err
		}
		s.remove(scheduleKey{e.Owner, p.Name})
	case TypeKeyDeleted:
		var p KeyDeleted
		if err := e.Decode(&p); err != nil {
			return err
		}
		s.remove(scheduleKey{e.Owner, p.Name})
	}
	return nil
}

// Next returns the earliest expiry to come, if any.
func (s *ExpirySchedule) Next() (time.Time, bool) {
	if len(s.queue) == 0 {
		return time.Time{}, false
	}
	return s.queue[0].expires, true
}

// TakeDue removes every key whose expiry has come at now and returns
// their owners, each once, earliest first. An owner whose KeyExpired
// could not be recorded is put back with Retry.
func (s *ExpirySchedule) TakeDue(now time.Time) []Owner {
	var owners []Owner
	seen := map[Owner]bool{}
	for len(s.queue) > 0 && !now.Before(s.queue[0].expires) {
		e := heap.Pop(&s.queue).(*scheduled)
		delete(s.byKey, e.key)
		if !seen[e.key.owner] {
			seen[e.key.owner] = true
			owners = append(owners, e.key.owner)
		}
	}
	return owners
}

// Retry schedules owner to be looked at again at t (its keys were due,
// but their expiry could not be recorded).
func (s *ExpirySchedule) Retry(owner Owner, t time.Time) {
	s.set(scheduleKey{owner: owner}, t)
}

func (s *ExpirySchedule) set(k scheduleKey, t time.Time) {
	if e, ok := s.byKey[k]; ok {
		e.expires = t
		heap.Fix(&s.queue, e.index)
		return
	}
	e := &scheduled{key: k, expires: t}
	s.byKey[k] = e
	heap.Push(&s.queue, e)
}

func (s *ExpirySchedule) remove(k scheduleKey) {
	if e, ok := s.byKey[k]; ok {
		heap.Remove(&s.queue, e.index)
		delete(s.byKey, k)
	}
}

// expiryQueue is a min-heap of entries by expiry (container/heap).
type expiryQueue []*scheduled

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].expires.Before(q[j].expires) }
func (q expiryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *expiryQueue) Push(x any) {
	e := x.(*scheduled)
	e.index = len(*q)
	*q = append(*q, e)
}
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}
