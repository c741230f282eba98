package domain

// The event catalogue: every event type keysd writes is declared here, once,
// with its payload type and the newest schema version of that payload. A
// new event type is one line in each of the three lists below, its
// decision, and its entry in docs/events.md. Payload types live with the
// aggregate they belong to; the declaration binds each to its name and
// version, so NewEvent takes both from the payload and no decision can
// record a payload under another type or an outdated version.

// Event type names, as they appear in the log's "type" field and the
// Keysd-Type header. Events are facts in the past tense; once written they
// never change.
const (
	TypeAccountCreated  = "AccountCreated"
	TypeOperatorGranted = "OperatorGranted"
	TypeKeyCreated      = "KeyCreated"
	TypeKeyUpdated      = "KeyUpdated"
	TypeKeyDeleted      = "KeyDeleted"
	TypeKeyExpired      = "KeyExpired"
	TypePolicySet       = "AccountPolicySet"
	TypePrivateKeyRead  = "PrivateKeyRead"
	TypeInstanceRemoved = "InstanceRemoved"
	// TypeCascadeRequested is the cascade's work item, recorded with each
	// InstanceRemoved (owner kind cascade).
	TypeCascadeRequested = "CascadeRequested"
	// TypeKeyRejected records a driver key that was not created, and why.
	TypeKeyRejected = "KeyRejected"
	// TypeIntakeDuplicate records a message that asked for what was
	// already done: a key already there under its name, an instance
	// already removed.
	TypeIntakeDuplicate = "IntakeDuplicate"
	TypeTokenCreated    = "TokenCreated"
	TypeTokenRevoked    = "TokenRevoked"
	// Certificate authorities (owner kind ca), their serial counter
	// (serials), and the certificates they sign, which belong to the
	// owner of the certified key (account or instance).
	TypeCAKeyCreated        = "CAKeyCreated"
	TypeCAKeyRetired        = "CAKeyRetired"
	TypeSerialBlockReserved = "SerialBlockReserved"
	TypeCertificateIssued   = "CertificateIssued"
	TypeCertificateRevoked  = "CertificateRevoked"
)

// Each payload type's declaration: its event type name and the newest
// schema version this build writes and reads. A payload change that old
// readers cannot ignore raises the version here (docs/events.md,
// compatibility promise).
func (AccountCreated) EventType() EventType      { return EventType{TypeAccountCreated, 1} }
func (OperatorGranted) EventType() EventType     { return EventType{TypeOperatorGranted, 1} }
func (KeyCreated) EventType() EventType          { return EventType{TypeKeyCreated, 1} }
func (KeyUpdated) EventType() EventType          { return EventType{TypeKeyUpdated, 1} }
func (KeyDeleted) EventType() EventType          { return EventType{TypeKeyDeleted, 1} }
func (KeyExpired) EventType() EventType          { return EventType{TypeKeyExpired, 1} }
func (AccountPolicySet) EventType() EventType    { return EventType{TypePolicySet, 1} }
func (PrivateKeyRead) EventType() EventType      { return EventType{TypePrivateKeyRead, 1} }
func (InstanceRemoved) EventType() EventType     { return EventType{TypeInstanceRemoved, 1} }
func (CascadeRequested) EventType() EventType    { return EventType{TypeCascadeRequested, 1} }
func (KeyRejected) EventType() EventType         { return EventType{TypeKeyRejected, 1} }
func (IntakeDuplicate) EventType() EventType     { return EventType{TypeIntakeDuplicate, 1} }
func (TokenCreated) EventType() EventType        { return EventType{TypeTokenCreated, 1} }
func (TokenRevoked) EventType() EventType        { return EventType{TypeTokenRevoked, 1} }
func (CAKeyCreated) EventType() EventType        { return EventType{TypeCAKeyCreated, 1} }
func (CAKeyRetired) EventType() EventType        { return EventType{TypeCAKeyRetired, 1} }
func (SerialBlockReserved) EventType() EventType { return EventType{TypeSerialBlockReserved, 1} }
func (CertificateIssued) EventType() EventType   { return EventType{TypeCertificateIssued, 1} }
func (CertificateRevoked) EventType() EventType  { return EventType{TypeCertificateRevoked, 1} }

// catalogue holds a value of every payload type keysd writes (a test
// checks that no declared payload type is missing from it).
var catalogue = []Payload{
	AccountCreated{}, OperatorGranted{}, KeyCreated{}, KeyUpdated{}, KeyDeleted{},
	AccountPolicySet{}, PrivateKeyRead{}, InstanceRemoved{}, KeyRejected{},
	IntakeDuplicate{}, TokenCreated{}, TokenRevoked{},
	CAKeyCreated{}, CAKeyRetired{}, SerialBlockReserved{}, CertificateIssued{}, CertificateRevoked{},
	KeyExpired{}, CascadeRequested{},
}

// EventType declares one kind of event: its name in the log and the newest
// schema version of its payload.
type EventType struct {
	Name    string
	Version int
}

// Payload is the data of an event. Its EventType method is the
// declaration of the event type it is written as (see the catalogue);
// NewEvent takes the event's type and version from it.
type Payload interface {
	EventType() EventType
}

// EventTypes returns the declaration of every event type keysd writes, in
// the catalogue's order.
func EventTypes() []EventType {
	out := make([]EventType, len(catalogue))
	for i, p := range catalogue {
		out[i] = p.EventType()
	}
	return out
}

// SchemaVersions is the newest schema version of each event type that this
// build reads, by type name: the catalogue as a map. Event.Decode refuses
// newer versions.
var SchemaVersions = func() map[string]int {
	m := make(map[string]int, len(catalogue))
	for _, p := range catalogue {
		t := p.EventType()
		if _, dup := m[t.Name]; dup {
			panic("domain: event type " + t.Name + " is declared twice")
		}
		m[t.Name] = t.Version
	}
	return m
}()
