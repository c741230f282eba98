package projections

import "github.com/infrakeys/infrakeys/bus"

// ForgetStates empties the repository's memory, as on a replica that has
// not read these owners yet: the next loads read the bucket.
func (p *InfraKeys) ForgetStates() {
	p.shared.cache = newStateCache(sharedCacheBytes, sharedKeySize)
	p.instances.cache = newStateCache(instancesCacheBytes, instanceSize)
}

// ApplyRecorded applies rec as if the list had read it from the log:
// benchmarks feed the builder without a log.
func (r *Revocations) ApplyRecorded(rec bus.Recorded) error { return r.add(rec) }

// Encode encodes the list as Current does after catching up.
func (r *Revocations) Encode() (KRL, error) {
	if err := r.encode(); err != nil {
		return KRL{}, err
	}
	return KRL{Data: r.encoded, Version: r.version, Entries: r.entries}, nil
}
