package projections

// ForgetStates empties the repository's memory, as on a replica that has
// not read these owners yet: the next loads read the bucket.
func (p *InfraKeys) ForgetStates() {
	p.shared.cache = newStateCache(sharedCacheBytes, sharedKeySize)
	p.instances.cache = newStateCache(instancesCacheBytes, instanceSize)
}
