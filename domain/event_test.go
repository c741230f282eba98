package domain_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// accountCreatedV2 stands for a newer writer's version of AccountCreated.
type accountCreatedV2 domain.AccountCreated

func (accountCreatedV2) EventType() domain.EventType {
	return domain.EventType{Name: domain.TypeAccountCreated, Version: 2}
}

// somethingNew stands for an event type a newer writer added.
type somethingNew domain.AccountCreated

func (somethingNew) EventType() domain.EventType {
	return domain.EventType{Name: "SomethingNew", Version: 7}
}

func TestEventDecodeVersions(t *testing.T) {
	owner := domain.AccountOwner("alice")
	payload := domain.AccountCreated{Login: "alice"}
	t.Run("OK", func(t *testing.T) {
		e := domain.NewEvent(owner, payload, domain.Meta{})
		var got domain.AccountCreated
		if err := e.Decode(&got); err != nil || got != payload {
			t.Fatalf("Decode = %+v, %v; want %+v", got, err, payload)
		}
	})
	t.Run("ErrNewerVersion", func(t *testing.T) {
		e := domain.NewEvent(owner, accountCreatedV2(payload), domain.Meta{})
		var got domain.AccountCreated
		err := e.Decode(&got)
		if err == nil || !strings.Contains(err.Error(), "version 2 is newer than this keysd reads (1)") {
			t.Fatalf("Decode of a newer version: %v", err)
		}
	})
	t.Run("UnknownTypeDecodes", func(t *testing.T) {
		// Readers skip types they do not know; Decode does not judge them.
		e := domain.NewEvent(owner, somethingNew(payload), domain.Meta{})
		var got domain.AccountCreated
		if err := e.Decode(&got); err != nil {
			t.Fatal(err)
		}
	})
}

// NewEvent takes the type and version from the payload's declaration.
func TestNewEventTypeFromPayload(t *testing.T) {
	owner := domain.SharedOwner("web")
	for _, tc := range []struct {
		name    string
		payload domain.Payload
		want    domain.EventType
	}{
		{"KeyCreated", domain.KeyCreated{Name: "web"}, domain.EventType{Name: "KeyCreated", Version: 1}},
		{"KeyUpdated", domain.KeyUpdated{Name: "web"}, domain.EventType{Name: "KeyUpdated", Version: 1}},
		{"KeyDeleted", domain.KeyDeleted{Name: "web"}, domain.EventType{Name: "KeyDeleted", Version: 1}},
		{"AccountPolicySet", domain.AccountPolicySet{Login: "alice"}, domain.EventType{Name: "AccountPolicySet", Version: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := domain.NewEvent(owner, tc.payload, domain.Meta{})
			if got := (domain.EventType{Name: e.Type, Version: e.Version}); got != tc.want {
				t.Errorf("event type = %+v, want %+v", got, tc.want)
			}
			if got, want := domain.SchemaVersions[e.Type], tc.want.Version; got != want {
				t.Errorf("SchemaVersions[%s] = %d, want %d", e.Type, got, want)
			}
		})
	}
}

// KeyUpdated is a type of its own only to declare its event type: on the
// wire its payload is KeyCreated's, byte for byte, as docs/events.md says.
func TestKeyUpdatedPayloadIsKeyCreated(t *testing.T) {
	p := domain.KeyCreated{
		ID: "01J", Name: "web", Fingerprint: "aa:bb", FingerprintSHA256: "SHA256:x", Key: "ssh-ed25519 AAAA",
		Type: "ed25519", Bits: 256, Description: "front end",
		SealedPrivateKey: &domain.SealedSecret{SecretID: "s1", Alg: "A256GCM", AAD: "key+secretId", Nonce: []byte{1}, Ciphertext: []byte{2}},
		ReplacedSecretID: "s0",
	}
	created, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	updated, err := json.Marshal(domain.KeyUpdated(p))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(updated), string(created); got != want {
		t.Errorf("KeyUpdated payload = %s, want %s", got, want)
	}
}
