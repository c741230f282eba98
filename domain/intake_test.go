package domain_test

import (
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
)

// The two forms a driver key arrives in, and what is refused before any
// state is looked at.
func TestParseDriverKey(t *testing.T) {
	pair := MustKeyPair(t, "ssh")
	private := string(pair.PrivateKey)
	for _, tc := range []struct {
		name     string
		body     string
		wantCode string
		want     domain.DriverKey
	}{
		{"OKObject", `{"keyName":"ssh","publicKey":"` + pair.PublicKey + `","description":"d"}`, "",
			domain.DriverKey{InstanceID: "vm-1", Name: "ssh", Description: "d", PublicKey: pair.PublicKey, Scope: domain.ScopeInstance}},
		{"OKObjectName", `{"name":"ssh","scope":"shared"}`, "",
			domain.DriverKey{InstanceID: "vm-1", Name: "ssh", Scope: domain.ScopeShared}},
		{"OKObjectSameInstance", `{"instanceId":"vm-1","keyName":"ssh"}`, "",
			domain.DriverKey{InstanceID: "vm-1", Name: "ssh", Scope: domain.ScopeInstance}},
		{"OKHashForm", " ssh #" + private + "# " + pair.PublicKey + "\n", "",
			domain.DriverKey{InstanceID: "vm-1", Name: "ssh", PrivateKey: private, PublicKey: pair.PublicKey, Scope: domain.ScopeInstance}},
		{"ErrHashFormTooShort", "ssh#" + private, domain.EMALFORMED, domain.DriverKey{}},
		{"ErrObjectUnknownField", `{"keyName":"ssh","colour":"red"}`, domain.EMALFORMED, domain.DriverKey{}},
		{"ErrObjectNotJSON", `{"keyName":`, domain.EMALFORMED, domain.DriverKey{}},
		{"ErrOtherInstance", `{"instanceId":"vm-2","keyName":"ssh"}`, domain.EINVALID, domain.DriverKey{}},
		{"ErrScope", `{"keyName":"ssh","scope":"global"}`, domain.EINVALID, domain.DriverKey{}},
		{"ErrMissingName", `{"publicKey":"` + pair.PublicKey + `"}`, domain.EMISSING, domain.DriverKey{}},
		{"ErrMissingNameHashForm", "#" + private + "#" + pair.PublicKey, domain.EMISSING, domain.DriverKey{}},
		{"ErrInvalidName", `{"keyName":"a/b"}`, domain.EINVALID, domain.DriverKey{}},
		{"ErrDescriptionTooLong", `{"keyName":"ssh","description":"` + strings.Repeat("x", 4097) + `"}`, domain.EINVALID, domain.DriverKey{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.ParseDriverKey("vm-1", []byte(tc.body))
			CheckCode(t, err, tc.wantCode)
			if err != nil {
				CheckNoEcho(t, private, err.Error())
				return
			}
			if got != tc.want {
				t.Errorf("driver key = %+v, want %+v", got, tc.want)
			}
		})
	}
}
