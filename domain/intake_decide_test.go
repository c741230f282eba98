package domain

import (
	"testing"
)

// The intake's decisions against the state of the owner a driver key goes
// to: created, recorded before, the same key there already, or rejected
// and why. (They are unexported: IntakeService is their only user.)
func TestJudgeDriverKey(t *testing.T) {
	const fp, otherFP = "11:11", "22:22"
	record := IntakeRecord{Outcome: OutcomeCreated, EventID: "ev-1", KeyID: "key-1"}
	key := InfraKey{ID: "key-1", Name: "ssh", Scope: ScopeInstance, InstanceID: "vm-1", Fingerprint: fp}
	dk := DriverKey{InstanceID: "vm-1", Name: "ssh", Scope: ScopeInstance}
	other := DriverKey{InstanceID: "vm-1", Name: "deploy", Scope: ScopeInstance}
	type want struct {
		create    bool
		recorded  string // the event id of the record found
		duplicate string // the key id found the same
		reason    string
	}
	check := func(t *testing.T, got intakeVerdict, w want) {
		t.Helper()
		if g := got.create(); g != w.create {
			t.Errorf("create = %v, want %v", g, w.create)
		}
		var rec, dup string
		if got.recorded != nil {
			rec = got.recorded.EventID
		}
		if got.duplicate != nil {
			dup = got.duplicate.ID
		}
		if rec != w.recorded || dup != w.duplicate || got.reason != w.reason {
			t.Errorf("verdict: recorded %q, duplicate %q, reason %q; want %q, %q, %q", rec, dup, got.reason, w.recorded, w.duplicate, w.reason)
		}
		if (got.reason == "") != (got.message == "") {
			t.Errorf("reason %q comes with message %q", got.reason, got.message)
		}
	}
	t.Run("Instance", func(t *testing.T) {
		for _, tc := range []struct {
			name     string
			in       *Instance
			intakeID string
			dk       DriverKey
			fp       string
			want     want
		}{
			{"OK", &Instance{ID: "vm-1", Keys: []InfraKey{key}}, "m-2", other, otherFP, want{create: true}},
			{"OKEmpty", &Instance{ID: "vm-1"}, "m-2", dk, fp, want{create: true}},
			{"Recorded", &Instance{ID: "vm-1", Keys: []InfraKey{key}, Intake: map[string]IntakeRecord{"m-1": record}}, "m-1", dk, fp, want{recorded: "ev-1"}},
			{"RecordedAfterRemoval", &Instance{ID: "vm-1", Removed: true, Intake: map[string]IntakeRecord{"m-1": record}}, "m-1", dk, fp, want{recorded: "ev-1"}},
			{"Duplicate", &Instance{ID: "vm-1", Keys: []InfraKey{key}}, "m-2", dk, fp, want{duplicate: "key-1"}},
			{"ErrDuplicateName", &Instance{ID: "vm-1", Keys: []InfraKey{key}}, "m-2", dk, otherFP, want{reason: ReasonDuplicateName}},
			{"ErrInstanceRemoved", &Instance{ID: "vm-1", Removed: true}, "m-2", dk, fp, want{reason: ReasonInstanceRemoved}},
			{"ErrInstanceRemovedSameKey", &Instance{ID: "vm-1", Removed: true, Keys: []InfraKey{key}}, "m-2", dk, fp, want{reason: ReasonInstanceRemoved}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				check(t, judgeInstanceKey(tc.in, tc.intakeID, tc.dk, tc.fp), tc.want)
			})
		}
	})
	t.Run("Shared", func(t *testing.T) {
		shared := key
		shared.Scope, shared.InstanceID = ScopeShared, ""
		sdk := dk
		sdk.Scope = ScopeShared
		for _, tc := range []struct {
			name     string
			st       *SharedKey
			intakeID string
			fp       string
			want     want
		}{
			{"OK", &SharedKey{Name: "ssh"}, "m-2", fp, want{create: true}},
			{"OKAfterDeletion", &SharedKey{Name: "ssh", Intake: map[string]IntakeRecord{"m-1": record}}, "m-2", fp, want{create: true}},
			{"Recorded", &SharedKey{Name: "ssh", Key: &shared, Intake: map[string]IntakeRecord{"m-1": record}}, "m-1", fp, want{recorded: "ev-1"}},
			{"Duplicate", &SharedKey{Name: "ssh", Key: &shared}, "m-2", fp, want{duplicate: "key-1"}},
			{"ErrDuplicateName", &SharedKey{Name: "ssh", Key: &shared}, "m-2", otherFP, want{reason: ReasonDuplicateName}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				check(t, judgeSharedKey(tc.st, tc.intakeID, sdk, tc.fp), tc.want)
			})
		}
	})
}

// The reason recorded for a driver key whose message or halves are refused.
func TestIntakeRejectionReasons(t *testing.T) {
	a, err := GenerateKeyPair("ed25519", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKeyPair("ed25519", "b")
	if err != nil {
		t.Fatal(err)
	}
	parse := func(body string) error {
		_, err := ParseDriverKey("vm-1", []byte(body))
		return err
	}
	pair := func(public, private string) error {
		_, err := ParseKeyPair(public, private)
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"Malformed", parse("no hashes here"), ReasonMalformed},
		{"MalformedJSON", parse(`{"keyName":`), ReasonMalformed},
		{"InvalidName", parse(`{"keyName":"a/b"}`), ReasonInvalidKey},
		{"InvalidPublicHalf", pair("ssh-ed25519 AAAA", ""), ReasonInvalidKey},
		{"InvalidPrivateHalf", pair("", "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----\n"), ReasonInvalidKey},
		{"Mismatch", pair(b.PublicKey, string(a.PrivateKey)), ReasonMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err == nil {
				t.Fatal("not refused")
			}
			if got, want := reasonFor(tc.err), tc.want; got != want {
				t.Errorf("reason = %q, want %q (for %v)", got, want, tc.err)
			}
		})
	}
}
