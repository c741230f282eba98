package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/domain"
)

// at returns testMeta's time plus d.
func at(d time.Duration) time.Time { return testMeta.Time.Add(d) }

// ptr returns a pointer to t.
func ptr(t time.Time) *time.Time { return &t }

// MustExpiringAccount returns account alice with the key "laptop" that
// expires at expires, created at testMeta's time.
func MustExpiringAccount(tb testing.TB, expires time.Time) *domain.Account {
	tb.Helper()
	a := MustAccount(tb, "alice")
	ev, err := a.CreateExpiringKey("laptop", MustPublicKey(tb, "laptop"), nil, &expires, testMeta)
	if err != nil {
		tb.Fatal(err)
	}
	return MustApply(tb, domain.ApplyAccountEvent, a, a.Version, ev)
}

func TestParseExpires(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     time.Time
		code     string
	}{
		{"OK", "2030-01-02T15:04:05Z", time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC), ""},
		{"OKOffsetToUTC", "2030-01-02T16:04:05+01:00", time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC), ""},
		{"OKFractionDropped", "2030-01-02T15:04:05.999Z", time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC), ""},
		{"ErrDateOnly", "2030-01-02", time.Time{}, domain.EINVALID},
		{"ErrNoZone", "2030-01-02T15:04:05", time.Time{}, domain.EINVALID},
		{"ErrWords", "tomorrow", time.Time{}, domain.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := domain.ParseExpires(tc.in)
			CheckCode(t, err, tc.code)
			if err != nil {
				if !strings.Contains(domain.ErrorMessage(err), "expires") {
					t.Errorf("message %q does not name expires", domain.ErrorMessage(err))
				}
				return
			}
			if !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("ParseExpires(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

// An expiry must come after the command: every decision that creates a
// key refuses one that has passed, naming the field.
func TestCreateWithExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires time.Time
		code    string
	}{
		{"OK", at(time.Hour), ""},
		{"ErrNow", at(0), domain.EINVALID},
		{"ErrPast", at(-time.Second), domain.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(t *testing.T, what string, ev domain.Event, err error) {
				t.Helper()
				if got := domain.ErrorCode(err); got != tc.code {
					t.Fatalf("%s: error %v, want code %q", what, err, tc.code)
				}
				if err != nil {
					if !strings.Contains(domain.ErrorMessage(err), "expires must be in the future") {
						t.Errorf("%s: message %q", what, domain.ErrorMessage(err))
					}
					return
				}
				p := MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyCreated)
				if p.Expires == nil || !p.Expires.Equal(tc.expires) {
					t.Errorf("%s: KeyCreated.Expires = %v, want %v", what, p.Expires, tc.expires)
				}
			}
			ev, err := MustAccount(t, "alice").CreateExpiringKey("laptop", MustPublicKey(t, "laptop"), nil, &tc.expires, testMeta)
			check(t, "account key", ev, err)
			n := MustNewInfraKey(t, "web", "s-web")
			n.Expires = &tc.expires
			ev, err = (&domain.SharedKey{Name: "web"}).CreateShared(n, testMeta)
			check(t, "shared key", ev, err)
			ev, err = MustInstance(t, "vm-1").AddKey(n, testMeta)
			check(t, "instance key", ev, err)
		})
	}
}

// Deciding KeyExpired: one event per key whose expiry has come and is not
// recorded yet, none otherwise, for every kind of owner.
func TestExpireKeys(t *testing.T) {
	expires := at(time.Hour)
	acct := MustExpiringAccount(t, expires)
	shared := MustShared(t, func() domain.NewInfraKey {
		n := MustNewInfraKey(t, "web", "s-web")
		n.Expires = &expires
		return n
	}())
	inst := MustInstance(t, "vm-1", "plain")
	n := MustNewInfraKey(t, "root", "s-root")
	n.Expires = &expires
	ev, err := inst.AddKey(n, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	inst = MustApply(t, domain.ApplyInstanceEvent, inst, inst.Version, ev)

	// decide returns what each owner decides at now, after applying its
	// own decision at first (when set: the key already expired) or
	// deleting the key (when deleted).
	type decider struct {
		name   string
		decide func(t *testing.T, now time.Time, first *time.Time, deleted bool) []domain.Event
	}
	owners := []decider{
		{"Account", func(t *testing.T, now time.Time, first *time.Time, deleted bool) []domain.Event {
			a := acct
			if first != nil {
				a = MustApply(t, domain.ApplyAccountEvent, a, a.Version, a.ExpireKeys(*first, testMeta)...)
			}
			if deleted {
				other := MustPublicKey(t, "other")
				ev, err := a.CreateKey("other", other, nil, testMeta)
				if err != nil {
					t.Fatal(err)
				}
				a = MustApply(t, domain.ApplyAccountEvent, a, a.Version, ev)
				del, err := a.DeleteKey("laptop", testMeta)
				if err != nil {
					t.Fatal(err)
				}
				a = MustApply(t, domain.ApplyAccountEvent, a, a.Version, del)
			}
			return a.ExpireKeys(now, testMeta)
		}},
		{"Shared", func(t *testing.T, now time.Time, first *time.Time, deleted bool) []domain.Event {
			s := shared
			if first != nil {
				s = MustApply(t, domain.ApplySharedKeyEvent, s, s.Version, s.ExpireKey(*first, testMeta)...)
			}
			if deleted {
				del, err := s.Delete(testMeta)
				if err != nil {
					t.Fatal(err)
				}
				s = MustApply(t, domain.ApplySharedKeyEvent, s, s.Version, del)
			}
			return s.ExpireKey(now, testMeta)
		}},
		{"Instance", func(t *testing.T, now time.Time, first *time.Time, deleted bool) []domain.Event {
			in := inst
			if first != nil {
				in = MustApply(t, domain.ApplyInstanceEvent, in, in.Version, in.ExpireKeys(*first, testMeta)...)
			}
			if deleted {
				del, err := in.DeleteKey("root", testMeta)
				if err != nil {
					t.Fatal(err)
				}
				in = MustApply(t, domain.ApplyInstanceEvent, in, in.Version, del)
			}
			return in.ExpireKeys(now, testMeta)
		}},
	}
	for _, o := range owners {
		for _, tc := range []struct {
			name    string
			now     time.Time
			first   *time.Time
			deleted bool
			want    int
		}{
			{"NotYetDue", expires.Add(-time.Second), nil, false, 0},
			{"Due", expires, nil, false, 1},
			{"Overdue", expires.Add(24 * time.Hour), nil, false, 1},
			{"AlreadyExpired", expires.Add(time.Minute), ptr(expires), false, 0},
			{"Deleted", expires.Add(time.Minute), nil, true, 0},
		} {
			t.Run(o.name+"/"+tc.name, func(t *testing.T) {
				evs := o.decide(t, tc.now, tc.first, tc.deleted)
				if got := len(evs); got != tc.want {
					t.Fatalf("decided %d events, want %d", got, tc.want)
				}
				for _, e := range evs {
					p := MustDecode[domain.KeyExpired](t, e, domain.TypeKeyExpired)
					if !p.Expires.Equal(expires) || p.Fingerprint == "" || p.FingerprintSHA256 == "" || p.Name == "" {
						t.Errorf("KeyExpired = %+v", p)
					}
				}
			})
		}
	}
	t.Run("Instance/Removed", func(t *testing.T) {
		if evs := MustRemoved(t, inst).ExpireKeys(expires, testMeta); len(evs) != 0 {
			t.Errorf("a removed instance decided %d KeyExpired", len(evs))
		}
	})
}

// An expired shared key is final: updating it is refused, so no update
// ever makes it look live again.
func TestSharedKeyUpdateExpiry(t *testing.T) {
	expires := at(time.Hour)
	n := MustNewInfraKey(t, "web", "s-web")
	n.Expires = &expires
	web := MustShared(t, n)
	later := at(2 * time.Hour)
	for _, tc := range []struct {
		name    string
		now     time.Time
		expires *time.Time
		want    time.Time
		code    string
	}{
		{"OKKeepsExpiry", at(time.Minute), nil, expires, ""},
		{"OKNewExpiry", at(time.Minute), &later, later, ""},
		{"ErrPastExpiry", at(time.Minute), ptr(at(0)), time.Time{}, domain.EINVALID},
		{"ErrExpired", expires, nil, time.Time{}, domain.ECONFLICT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := testMeta
			m.Time = tc.now
			desc := "new"
			ev, _, err := web.Change(domain.SharedKeyChange{Description: &desc, Expires: tc.expires}, nil, nil, m)
			CheckCode(t, err, tc.code)
			if err != nil {
				return
			}
			p := MustDecode[domain.KeyCreated](t, ev, domain.TypeKeyUpdated)
			if p.Expires == nil || !p.Expires.Equal(tc.want) {
				t.Errorf("KeyUpdated.Expires = %v, want %v", p.Expires, tc.want)
			}
		})
	}
}

// The schedule holds the keys still to expire, from the log's events, and
// hands out their owners when due.
func TestExpirySchedule(t *testing.T) {
	s := domain.NewExpirySchedule()
	mustApply := func(evs ...domain.Event) {
		t.Helper()
		for _, e := range evs {
			if err := s.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	created := func(owner domain.Owner, name string, expires *time.Time) domain.Event {
		return domain.NewEvent(owner, domain.KeyCreated{Name: name, Fingerprint: "fp-" + name, Expires: expires}, testMeta)
	}
	alice, bob := domain.AccountOwner("alice"), domain.AccountOwner("bob")
	web, vm := domain.SharedOwner("web"), domain.InstanceOwner("vm-1")
	mustApply(
		created(alice, "a1", ptr(at(2*time.Hour))),
		created(alice, "a2", ptr(at(time.Hour))),
		created(alice, "never", nil),
		created(bob, "b1", ptr(at(3*time.Hour))),
		created(web, "web", ptr(at(5*time.Hour))),
		created(vm, "root", ptr(at(time.Hour))),
		created(vm, "gone", ptr(at(time.Hour))),
		domain.NewEvent(vm, domain.KeyDeleted{Name: "gone"}, testMeta),
		// Updated: a later expiry for web.
		domain.NewEvent(web, domain.KeyUpdated{Name: "web", Expires: ptr(at(4 * time.Hour))}, testMeta),
		// Expired elsewhere already: bob's key.
		domain.NewEvent(bob, domain.KeyExpired{Name: "b1", Expires: at(3 * time.Hour)}, testMeta),
	)
	if got, want := s.Len(), 4; got != want {
		t.Fatalf("Len = %d, want %d (a1, a2, root, web)", got, want)
	}
	if next, ok := s.Next(); !ok || !next.Equal(at(time.Hour)) {
		t.Fatalf("Next = %v, %v; want %v", next, ok, at(time.Hour))
	}
	if got := s.TakeDue(at(time.Hour - time.Second)); len(got) != 0 {
		t.Fatalf("due before the first expiry: %v", got)
	}
	got := s.TakeDue(at(2 * time.Hour))
	if len(got) != 2 || !(got[0] == alice && got[1] == vm || got[0] == vm && got[1] == alice) {
		t.Fatalf("due at +2h: %v, want alice and vm-1 once each", got)
	}
	if next, _ := s.Next(); !next.Equal(at(4 * time.Hour)) {
		t.Errorf("Next after +2h = %v, want web's updated expiry %v", next, at(4*time.Hour))
	}
	s.Retry(alice, at(3*time.Hour))
	if got := s.TakeDue(at(3 * time.Hour)); len(got) != 1 || got[0] != alice {
		t.Errorf("due at +3h: %v, want alice (retried)", got)
	}
	if got := s.TakeDue(at(5 * time.Hour)); len(got) != 1 || got[0] != web {
		t.Errorf("due at +5h: %v, want web", got)
	}
	if s.Len() != 0 {
		t.Errorf("Len = %d after everything was due", s.Len())
	}
}

// A certificate is refused for an expired key, and never outlives its
// key.
func TestCertificateKeyExpiry(t *testing.T) {
	expires := at(30 * time.Minute)
	acct := MustExpiringAccount(t, expires)
	t.Run("UserCappedAtExpiry", func(t *testing.T) {
		cert, _, err := acct.PlanUserCertificate("laptop", domain.CertRequest{}, at(0))
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(int64(cert.ValidBefore), 0); !got.Equal(expires) {
			t.Errorf("validBefore = %v, want the key's expiry %v", got, expires)
		}
	})
	t.Run("UserBeforeExpiryKept", func(t *testing.T) {
		cert, _, err := acct.PlanUserCertificate("laptop", domain.CertRequest{Validity: 10 * time.Minute}, at(0))
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(int64(cert.ValidBefore), 0); !got.Equal(at(10 * time.Minute)) {
			t.Errorf("validBefore = %v, want %v", got, at(10*time.Minute))
		}
	})
	t.Run("ErrUserExpired", func(t *testing.T) {
		_, _, err := acct.PlanUserCertificate("laptop", domain.CertRequest{}, expires)
		CheckCode(t, err, domain.ECONFLICT)
		if !strings.Contains(domain.ErrorMessage(err), "expired") {
			t.Errorf("message %q", domain.ErrorMessage(err))
		}
	})
	t.Run("ErrUserValidAfterPastExpiry", func(t *testing.T) {
		_, _, err := acct.PlanUserCertificate("laptop", domain.CertRequest{ValidAfter: expires, Validity: time.Hour}, at(0))
		CheckCode(t, err, domain.EINVALID)
	})
	in := MustInstance(t, "vm-1")
	n := MustNewInfraKey(t, "host", "s-host")
	n.Expires = &expires
	ev, err := in.AddKey(n, testMeta)
	if err != nil {
		t.Fatal(err)
	}
	in = MustApply(t, domain.ApplyInstanceEvent, in, in.Version, ev)
	t.Run("HostCappedAtExpiry", func(t *testing.T) {
		cert, _, err := in.PlanHostCertificate("host", domain.CertRequest{Principals: []string{"vm-1.example.com"}}, at(0))
		if err != nil {
			t.Fatal(err)
		}
		if got := time.Unix(int64(cert.ValidBefore), 0); !got.Equal(expires) {
			t.Errorf("validBefore = %v, want the key's expiry %v", got, expires)
		}
	})
	t.Run("ErrHostExpired", func(t *testing.T) {
		_, _, err := in.PlanHostCertificate("host", domain.CertRequest{Principals: []string{"vm-1.example.com"}}, expires.Add(time.Second))
		CheckCode(t, err, domain.ECONFLICT)
	})
}
