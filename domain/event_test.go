package domain_test

import (
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

func TestEventDecodeVersions(t *testing.T) {
	owner := domain.AccountOwner("alice")
	payload := domain.AccountCreated{Login: "alice"}
	t.Run("OK", func(t *testing.T) {
		e := domain.NewEvent(owner, domain.TypeAccountCreated, 1, payload, domain.Meta{})
		var got domain.AccountCreated
		if err := e.Decode(&got); err != nil || got != payload {
			t.Fatalf("Decode = %+v, %v; want %+v", got, err, payload)
		}
	})
	t.Run("ErrNewerVersion", func(t *testing.T) {
		e := domain.NewEvent(owner, domain.TypeAccountCreated, 2, payload, domain.Meta{})
		var got domain.AccountCreated
		err := e.Decode(&got)
		if err == nil || !strings.Contains(err.Error(), "version 2 is newer than this keysd reads (1)") {
			t.Fatalf("Decode of a newer version: %v", err)
		}
	})
	t.Run("UnknownTypeDecodes", func(t *testing.T) {
		// Readers skip types they do not know; Decode does not judge them.
		e := domain.NewEvent(owner, "SomethingNew", 7, payload, domain.Meta{})
		var got domain.AccountCreated
		if err := e.Decode(&got); err != nil {
			t.Fatal(err)
		}
	})
}
