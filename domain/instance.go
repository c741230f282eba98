package domain

// Instance is a resource instance as far as keys go: the keys its drivers
// generated, and whether the resource manager removed it. All of an
// instance's events share one subject, so a key published for an instance
// that was removed meanwhile fails the optimistic check and is decided
// again, against the removal: no key is ever left orphaned.
type Instance struct {
	ID        string     `json:"id"`
	Removed   bool       `json:"removed,omitempty"`
	RemovedBy string     `json:"removedBy,omitempty"` // the InstanceRemoved event id
	Keys      []InfraKey `json:"keys"`
	// Intake is, by intake id, the driver messages that created a key of
	// this instance or announced its removal: processing a message twice
	// finds it here. (Rejections are events of their own intake owner.)
	Intake  map[string]IntakeRecord `json:"intake,omitempty"`
	Version uint64                  `json:"version"`
}

// InstanceRemoved records that the resource manager removed an instance;
// its keys are deleted by the cascade.
type InstanceRemoved struct {
	InstanceID string `json:"instanceId"`
}

// FindKey returns the instance's key named name, or nil.
func (in *Instance) FindKey(name string) *InfraKey {
	for i := range in.Keys {
		if in.Keys[i].Name == name {
			return &in.Keys[i]
		}
	}
	return nil
}

// AddKey decides adding a driver-generated key to the instance.
func (in *Instance) AddKey(n NewInfraKey, m Meta) (Event, error) {
	if err := validateNewInfraKey(n); err != nil {
		return Event{}, err
	}
	if in.Removed {
		return Event{}, Errorf(ECONFLICT, "instance %s was removed", in.ID)
	}
	if in.FindKey(n.Name) != nil {
		return Event{}, Errorf(ECONFLICT, "instance %s already has a key named %s", in.ID, n.Name)
	}
	if err := checkExpires(n.Expires, m); err != nil {
		return Event{}, err
	}
	return NewEvent(InstanceOwner(in.ID), n.payload(), m), nil
}

// Remove decides the removal of the instance; removing it again decides
// nothing. With the InstanceRemoved goes a CascadeRequested of owner
// cascade/<id>, caused by it and appended in the same atomic batch: the
// cascade's work item, on a subject of its own so the cascade reads only
// removals and not every instance event.
func (in *Instance) Remove(m Meta) []Event {
	if in.Removed {
		return nil
	}
	removed := NewEvent(InstanceOwner(in.ID), InstanceRemoved{InstanceID: in.ID}, m)
	m.CausationID = removed.ID
	return []Event{removed, NewEvent(CascadeOwner(in.ID), CascadeRequested{InstanceID: in.ID}, m)}
}

// OwnerCascade is the owner kind of the cascade's work items: one owner
// per removed instance, whose CascadeRequested asks for its keys to be
// deleted.
const OwnerCascade = "cascade"

// CascadeOwner is the owner of instance id's cascade work item.
func CascadeOwner(id string) Owner { return Owner{Kind: OwnerCascade, ID: id} }

// CascadeRequested asks for the deletion of every key of a removed
// instance. It is recorded with the InstanceRemoved that causes it (its
// causationId), atomically, and only then.
type CascadeRequested struct {
	InstanceID string `json:"instanceId"`
}

// DeleteKey decides deleting the instance's key named name, as caused by
// the event cause (the InstanceRemoved).
func (in *Instance) DeleteKey(name string, m Meta) (Event, error) {
	k := in.FindKey(name)
	if k == nil {
		return Event{}, Errorf(ENOTFOUND, "instance %s has no key %s", in.ID, name)
	}
	return NewEvent(InstanceOwner(in.ID), keyDeleted(k), m), nil
}

// Cascade decides the deletion of up to max of a removed instance's keys,
// each a KeyDeleted caused by the InstanceRemoved. It decides nothing for
// an instance that is not removed or has no keys left.
func (in *Instance) Cascade(max int, m Meta) []Event {
	if !in.Removed {
		return nil
	}
	m.CausationID = in.RemovedBy
	var evs []Event
	for i := range in.Keys {
		if len(evs) == max {
			break
		}
		evs = append(evs, NewEvent(InstanceOwner(in.ID), keyDeleted(&in.Keys[i]), m))
	}
	return evs
}

func keyDeleted(k *InfraKey) KeyDeleted {
	p := KeyDeleted{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint}
	if k.PrivateKey != nil {
		p.SecretID = k.PrivateKey.SecretID
	}
	return p
}

// ApplyInstanceEvent returns the instance after e, stored at seq. Events
// at or below the version are ignored.
func ApplyInstanceEvent(in *Instance, e Event, seq uint64) (*Instance, error) {
	if in == nil {
		in = &Instance{ID: e.Owner.ID, Keys: []InfraKey{}}
	}
	if seq <= in.Version || e.Owner.Kind != OwnerInstance {
		// Not the instance's: the CascadeRequested appended with its
		// InstanceRemoved belongs to another owner.
		return in, nil
	}
	var created *KeyCreated
	switch e.Type {
	case TypeKeyCreated:
		var p KeyCreated
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		in.Keys = append(in.Keys, *infraKeyFrom(p, ScopeInstance, in.ID, e.Time))
		created = &p
	case TypeKeyDeleted:
		var p KeyDeleted
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		keys := make([]InfraKey, 0, len(in.Keys))
		for _, k := range in.Keys {
			if k.Name != p.Name {
				keys = append(keys, k)
			}
		}
		in.Keys = keys
	case TypeKeyExpired:
		var p KeyExpired
		if err := e.Decode(&p); err != nil {
			return nil, err
		}
		if k := in.FindKey(p.Name); k != nil {
			k.Expired = true
		}
	case TypeInstanceRemoved:
		in.Removed, in.RemovedBy = true, e.ID
	}
	if id, r, ok := intakeRecordOf(e, created, ScopeInstance); ok {
		if in.Intake == nil {
			in.Intake = map[string]IntakeRecord{}
		}
		in.Intake[id] = r
	}
	in.Version = seq
	return in, nil
}
