package sealing

// Keyring holds the current master key, which wraps new data keys, and older
// master keys, which are kept only to open and rewrap data keys wrapped
// before a rotation. A Keyring is immutable, which makes it safe for
// concurrent use; rotating means building a new one.
type Keyring struct {
	current *MasterKey
	byID    map[string]*MasterKey
}

// NewKeyring returns a keyring whose current master key is current. It
// panics if a master key is nil, which is a wiring mistake.
func NewKeyring(current *MasterKey, older ...*MasterKey) *Keyring {
	if current == nil {
		panic("sealing: NewKeyring: nil current master key")
	}
	r := &Keyring{current: current, byID: make(map[string]*MasterKey, 1+len(older))}
	for _, m := range older {
		if m == nil {
			panic("sealing: NewKeyring: nil older master key")
		}
		r.byID[m.id] = m
	}
	r.byID[current.id] = current
	return r
}

// Current returns the master key that wraps new data keys.
func (r *Keyring) Current() *MasterKey { return r.current }

// Get returns the master key with the given id, current or older.
func (r *Keyring) Get(id string) (*MasterKey, bool) {
	m, ok := r.byID[id]
	return m, ok
}
