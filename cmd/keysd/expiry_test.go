package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// soon returns an expiry d from now, in whole seconds, and its RFC 3339
// form. Keys expiring in a few seconds let a test watch expiry happen.
func soon(d time.Duration) (time.Time, string) {
	t := time.Now().Add(d).Truncate(time.Second).UTC()
	return t, t.Format(time.RFC3339)
}

// waitUntil sleeps until t has passed: the wall clock a key's expiry is
// measured against.
func waitUntil(t time.Time) {
	time.Sleep(time.Until(t) + 50*time.Millisecond)
}

// expiredCounts counts the KeyExpired events of evs by "owner/key name".
func expiredCounts(tb testing.TB, evs []bus.Recorded) map[string]int {
	tb.Helper()
	out := map[string]int{}
	for _, r := range eventsOf(evs, domain.TypeKeyExpired) {
		var p domain.KeyExpired
		if err := r.Event.Decode(&p); err != nil {
			tb.Fatal(err)
		}
		out[r.Event.Owner.String()+"/"+p.Name]++
	}
	return out
}

// expirerSaw reports whether k's expirer has decided about owner: it
// recorded its keys' expiry or found nothing to record.
func expirerSaw(k *keysd, owner domain.Owner) bool {
	for _, line := range strings.Split(k.stderr.String(), "\n") {
		if strings.Contains(line, `"msg":"expirer: `) && strings.Contains(line, `"owner":"`+owner.String()+`"`) {
			return true
		}
	}
	return false
}

// Every surface takes an expiry, and refuses one that has passed or does
// not parse, in its own error format, naming the field, recording nothing.
func TestKeyExpiresInput(t *testing.T) {
	k := MustStartLM(t, nil)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	_, future := soon(time.Hour)
	MustAccountWithKey(t, k, "alice", MustKey(t))

	t.Run("CloudAPI", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			expires any
			code    string
			message string
		}{
			{"ErrPast", past, "InvalidArgument", "expires must be in the future"},
			{"ErrUnparsable", "next tuesday", "InvalidArgument", "expires must be a time in RFC 3339 form"},
			{"ErrNotString", 1234, "InvalidArgument", "expires must be a String"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := k.Admin.Do(t, "POST", "/alice/keys", map[string]any{"name": "temp", "key": AuthorizedKey(t, MustKey(t), ""), "expires": tc.expires})
				if r.StatusCode != http.StatusConflict {
					t.Fatalf("status %d %s, want 409", r.StatusCode, r.Body)
				}
				if code, msg := r.ErrorBody(t); code != tc.code || !strings.Contains(msg, tc.message) {
					t.Errorf("error %s %q, want %s %q", code, msg, tc.code, tc.message)
				}
			})
		}
		if r := k.Admin.Do(t, "GET", "/alice/keys/temp", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("a refused key exists: %d %s", r.StatusCode, r.Body)
		}
		var key struct {
			Expires string
			Expired *bool
		}
		k.Admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": "temp", "key": AuthorizedKey(t, MustKey(t), ""), "expires": future}).JSON(t, &key)
		if key.Expires != future || key.Expired == nil || *key.Expired {
			t.Errorf("created key shows expires %q expired %v, want %s and false", key.Expires, key.Expired, future)
		}
		// A key without an expiry shows neither field, as before.
		var plain map[string]any
		k.Admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": "plain", "key": AuthorizedKey(t, MustKey(t), "")}).JSON(t, &plain)
		if _, ok := plain["expires"]; ok {
			t.Errorf("a key without expiry shows expires: %v", plain)
		}
		if _, ok := plain["expired"]; ok {
			t.Errorf("a key without expiry shows expired: %v", plain)
		}
	})

	t.Run("OperatorAccountCreate", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			body    map[string]any
			message string
		}{
			{"ErrPast", map[string]any{"login": "carol", "key": AuthorizedKey(t, MustKey(t), ""), "expires": past}, "expires must be in the future"},
			{"ErrNoKey", map[string]any{"login": "carol", "expires": future}, "expires needs a key"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := k.Admin.Do(t, "POST", "/--admin/accounts", tc.body)
				if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" || !strings.Contains(msg, tc.message) {
					t.Errorf("%d %s %q, want 409 InvalidArgument %q", r.StatusCode, code, msg, tc.message)
				}
			})
		}
		if r := k.Admin.Do(t, "GET", "/--admin/accounts/carol", nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("a refused account exists: %d %s", r.StatusCode, r.Body)
		}
		var acct struct {
			Keys []struct{ Expires string }
		}
		k.Admin.MustOK(t, http.StatusCreated, "POST", "/--admin/accounts", map[string]any{"login": "carol", "key": AuthorizedKey(t, MustKey(t), ""), "expires": future}).JSON(t, &acct)
		if len(acct.Keys) != 1 || acct.Keys[0].Expires != future {
			t.Errorf("created account's keys %+v, want one expiring at %s", acct.Keys, future)
		}
	})

	t.Run("LM", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			expires any
			status  int
			message string
		}{
			{"ErrPast", past, http.StatusBadRequest, "expires must be in the future"},
			{"ErrUnparsable", "2030-13-45", http.StatusBadRequest, "expires must be a time in RFC 3339 form"},
			{"ErrNotString", true, http.StatusBadRequest, "expires must be a string"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "web", "generate": "ed25519", "expires": tc.expires})
				if r.StatusCode != tc.status {
					t.Fatalf("status %d %s, want %d", r.StatusCode, r.Body, tc.status)
				}
				if e := r.LMError(t); !strings.Contains(e.LocalizedMessage, tc.message) {
					t.Errorf("localizedMessage %q, want %q", e.LocalizedMessage, tc.message)
				}
			})
		}
		if r := k.Admin.Do(t, "GET", keyPath("web"), nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("a refused key exists: %d %s", r.StatusCode, r.Body)
		}
		var key struct{ Expires string }
		k.Admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "web", "generate": "ed25519", "expires": future}).JSON(t, &key)
		if key.Expires != future {
			t.Errorf("created key shows expires %q, want %s", key.Expires, future)
		}
		// In YAML, as LM's CLI sends it: an unquoted time is a string.
		r := k.Admin.YAML(t, "POST", lmPrefix+"/shared", "name: yml\ngenerate: ed25519\nexpires: "+future+"\n")
		if r.StatusCode != http.StatusCreated {
			t.Fatalf("create in YAML: %d %s", r.StatusCode, r.Body)
		}
		var yml struct {
			Expires string `yaml:"expires"`
			Expired bool   `yaml:"expired"`
		}
		r.Decode(t, &yml)
		if yml.Expires != future || yml.Expired {
			t.Errorf("YAML answer shows expires %q expired %v, want %s and false: %s", yml.Expires, yml.Expired, future, r.Body)
		}
		// An update may set a later expiry, never one that has passed.
		_, later := soon(2 * time.Hour)
		k.Admin.MustOK(t, http.StatusNoContent, "PUT", keyPath("web"), map[string]any{"expires": later})
		k.Admin.MustOK(t, http.StatusOK, "GET", keyPath("web"), nil).JSON(t, &key)
		if key.Expires != later {
			t.Errorf("updated key shows expires %q, want %s", key.Expires, later)
		}
		r = k.Admin.Do(t, "PUT", keyPath("web"), map[string]any{"expires": past})
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(r.LMError(t).LocalizedMessage, "expires must be in the future") {
			t.Errorf("update to a past expiry: %d %s", r.StatusCode, r.Body)
		}
	})

	t.Run("Intake", func(t *testing.T) {
		d := newDriver(t, MustNATS(t, k, bus.RoleDriver))
		priv, pub := genKey(t, "root")
		for _, tc := range []struct {
			name, expires, message string
		}{
			{"ErrPast", past, "expires must be in the future"},
			{"ErrUnparsable", "1 Jan 2030", "expires must be a time in RFC 3339 form"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, ch := d.publish(t, bus.IntakeKeySubject("i-1"), driverKey(t, map[string]any{"keyName": "root-" + tc.name, "publicKey": pub, "privateKey": priv, "expires": tc.expires}), "")
				o := outcome(t, ch)
				if o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInvalidExpiry || !strings.Contains(o.Message, tc.message) {
					t.Errorf("outcome %+v, want rejected (%s) with %q", o, domain.ReasonInvalidExpiry, tc.message)
				}
			})
		}
		_, ch := d.publish(t, bus.IntakeKeySubject("i-1"), driverKey(t, map[string]any{"keyName": "root", "publicKey": pub, "privateKey": priv, "expires": future}), "")
		if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
			t.Fatalf("outcome %+v, want created", o)
		}
		keys := k.instanceKeys(t, "i-1")
		if len(keys) != 1 || keys[0]["expires"] != future || keys[0]["expired"] != false {
			t.Errorf("instance keys %v, want root expiring at %s", keys, future)
		}
	})

	// KeyCreated carries the expiry, for every kind of owner.
	want := map[string]bool{"account/alice": true, "shared/web": true, "instance/i-1": true}
	for _, r := range eventsOf(MustEvents(t, k), domain.TypeKeyCreated) {
		var p domain.KeyCreated
		if err := r.Event.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Expires != nil && p.Expires.Format(time.RFC3339) == future {
			delete(want, r.Event.Owner.String())
		}
	}
	if len(want) > 0 {
		t.Errorf("no KeyCreated with expires %s for %v", future, want)
	}
}

// Two replicas on one NATS wake at the same expiry of several keys of
// every kind of owner: each key gets exactly one KeyExpired. A replica
// started again after records none again.
func TestKeyExpiredExactlyOnceAcrossReplicas(t *testing.T) {
	// Mostly waiting (timeouts, expiries, AckWait): it runs beside the
	// other waiting tests once the rest of the package is done.
	t.Parallel()
	ns := MustNATSServer(t)
	env := externalEnv(t, ns)
	k1 := MustStart(t, env)
	k2 := MustStart(t, map[string]string{"KEYSD_NATS_URL": env["KEYSD_NATS_URL"], "KEYSD_NATS_CREDS": env["KEYSD_NATS_CREDS"], "KEYSD_MASTER_KEY_FILE": env["KEYSD_MASTER_KEY_FILE"]})
	expires, at := soon(8 * time.Second)

	MustAccountWithKey(t, k1, "alice", MustKey(t)) // a key that stays
	for _, name := range []string{"a1", "a2", "a3"} {
		k1.Admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), ""), "expires": at})
	}
	MustAccountWithKey(t, k2, "bob", MustKey(t))
	k2.Admin.MustOK(t, http.StatusCreated, "POST", "/bob/keys", map[string]any{"name": "b1", "key": AuthorizedKey(t, MustKey(t), ""), "expires": at})
	for _, name := range []string{"s1", "s2"} {
		k1.Admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": name, "generate": "ed25519", "expires": at})
	}
	d := newDriver(t, connectExternal(t, ns, bus.RoleDriver))
	for _, name := range []string{"root", "backup"} {
		priv, pub := genKey(t, name)
		_, ch := d.publish(t, bus.IntakeKeySubject("i-1"), driverKey(t, map[string]any{"keyName": name, "publicKey": pub, "privateKey": priv, "expires": at}), "")
		if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
			t.Fatalf("driver key %s: %+v", name, o)
		}
	}
	if time.Now().After(expires) {
		t.Fatalf("creating the keys took past their expiry %s: the machine is too slow for this test", at)
	}
	want := []string{"account/alice/a1", "account/alice/a2", "account/alice/a3", "account/bob/b1", "shared/s1/s1", "shared/s2/s2", "instance/i-1/root", "instance/i-1/backup"}
	owners := []domain.Owner{domain.AccountOwner("alice"), domain.AccountOwner("bob"), domain.SharedOwner("s1"), domain.SharedOwner("s2"), domain.InstanceOwner("i-1")}

	// Both replicas decide about every owner: one records, the other
	// finds the keys expired (or records, and the first finds them so).
	eventually(t, 60*time.Second, "both expirers deciding about every owner", func() bool {
		for _, o := range owners {
			if !expirerSaw(k1, o) || !expirerSaw(k2, o) {
				return false
			}
		}
		return true
	})
	nc := connectService(t, ns)
	check := func(t *testing.T) {
		t.Helper()
		got := expiredCounts(t, events(t, nc))
		for _, key := range want {
			if got[key] != 1 {
				t.Errorf("%s: %d KeyExpired, want 1", key, got[key])
			}
		}
		if len(got) != len(want) {
			t.Errorf("KeyExpired for %v, want only %v", got, want)
		}
	}
	check(t)

	t.Run("RestartRecordsNone", func(t *testing.T) {
		k1.Restart(t)
		eventually(t, 60*time.Second, "the restarted expirer catching up", func() bool {
			return strings.Contains(k1.stderr.String(), `"msg":"expirer: caught up with the log","component":"expirer","scheduled":0`)
		})
		k1.Stop(t)
		k2.Stop(t)
		check(t)
	})
}

// A key whose expiry passed while keysd was stopped gets its KeyExpired
// after the start, once.
func TestKeyExpiredWhileStopped(t *testing.T) {
	k := MustStartLM(t, nil)
	expires, at := soon(5 * time.Second)
	MustAccountWithKey(t, k, "alice", MustKey(t))
	k.Admin.MustOK(t, http.StatusCreated, "POST", "/alice/keys", map[string]any{"name": "temp", "key": AuthorizedKey(t, MustKey(t), ""), "expires": at})
	k.Admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "web", "generate": "ed25519", "expires": at})
	k.Stop(t)
	if time.Now().After(expires) {
		t.Fatalf("keysd stopped after the expiry %s: the machine is too slow for this test", at)
	}
	waitUntil(expires)
	started := time.Now()
	k.Restart(t)
	var got map[string]int
	eventually(t, 30*time.Second, "KeyExpired of both keys after the start", func() bool {
		got = expiredCounts(t, MustEvents(t, k))
		return got["account/alice/temp"] == 1 && got["shared/web/web"] == 1
	})
	for _, r := range eventsOf(MustEvents(t, k), domain.TypeKeyExpired) {
		if r.Event.Time.Before(started) {
			t.Errorf("KeyExpired at %s, before keysd started again at %s", r.Event.Time, started)
		}
	}
	if len(got) != 2 {
		t.Errorf("KeyExpired: %v", got)
	}
}

// From its expiry on, a key no longer authenticates (401, saying it
// expired), gets no certificate, releases no private half; listings show
// it expired. Before, a certificate for it ends at its expiry.
func TestExpiredKeyEffects(t *testing.T) {
	k := MustStartLM(t, nil)
	MustCAKey(t, k, "user")
	expires, at := soon(6 * time.Second)
	stays, temp := MustKey(t), MustKey(t)
	bob := MustAccountNamedKey(t, k, "bob", "stays", stays)
	k.Admin.MustOK(t, http.StatusCreated, "POST", "/bob/keys", map[string]any{"name": "temp", "key": AuthorizedKey(t, temp, ""), "expires": at})
	tempClient := k.Client(t, "bob", temp)
	k.Admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "web", "generate": "ed25519", "expires": at})
	k.Admin.MustOK(t, http.StatusCreated, "POST", lmPrefix+"/shared", map[string]any{"name": "db", "generate": "ed25519"})
	reader, _ := MustToken(t, k, "reader", "keys:read", "keys:private")

	// Before the expiry: the key signs, and its certificate ends when it
	// expires.
	tempClient.MustOK(t, http.StatusOK, "GET", "/my/keys", nil)
	cert := tempClient.MustSign(t, "/my/keys/temp/certificates", map[string]any{"validity": "1h"})
	if got := cert.ValidBefore; !got.Equal(expires) {
		t.Errorf("certificate validBefore %s, want the key's expiry %s", got, expires)
	}
	k.Bearer(reader).MustOK(t, http.StatusOK, "GET", keyPath("web")+"?includePrivateKey=true", nil)
	if time.Now().After(expires) {
		t.Fatalf("the checks before the expiry %s ran past it: the machine is too slow for this test", at)
	}

	waitUntil(expires)
	// Checked twice: right after the expiry (its KeyExpired may not be
	// recorded yet), and once it is.
	for _, when := range []string{"AtExpiry", "AfterKeyExpired"} {
		t.Run(when, func(t *testing.T) {
			if when == "AfterKeyExpired" {
				eventually(t, 30*time.Second, "KeyExpired of both keys", func() bool {
					got := expiredCounts(t, MustEvents(t, k))
					return got["account/bob/temp"] == 1 && got["shared/web/web"] == 1
				})
			}
			r := tempClient.Do(t, "GET", "/my/keys", nil)
			if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusUnauthorized || code != "InvalidCredentials" || !strings.Contains(msg, "expired") {
				t.Errorf("signed with the expired key: %d %s %q, want 401 InvalidCredentials saying it expired", r.StatusCode, code, msg)
			}
			var keys []struct {
				Name    string
				Expires string
				Expired *bool
			}
			bob.MustOK(t, http.StatusOK, "GET", "/my/keys", nil).JSON(t, &keys)
			for _, key := range keys {
				switch {
				case key.Name == "temp" && (key.Expires != at || key.Expired == nil || !*key.Expired):
					t.Errorf("temp shows expires %q expired %v, want %s and true", key.Expires, key.Expired, at)
				case key.Name == "stays" && (key.Expires != "" || key.Expired != nil):
					t.Errorf("stays shows an expiry: %+v", key)
				}
			}
			r = bob.Do(t, "POST", "/my/keys/temp/certificates", map[string]any{})
			if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" || !strings.Contains(msg, "key temp expired at "+at) {
				t.Errorf("certificate for the expired key: %d %s %q", r.StatusCode, code, msg)
			}

			// LM: the private half of an expired key is not released.
			r = k.Bearer(reader).Do(t, "GET", keyPath("web")+"?includePrivateKey=true", nil)
			if r.StatusCode != http.StatusConflict || !strings.Contains(r.LMError(t).LocalizedMessage, "infrastructure key web expired at "+at) {
				t.Errorf("private half of the expired key: %d %s", r.StatusCode, r.Body)
			}
			var list []map[string]any
			k.Bearer(reader).MustOK(t, http.StatusOK, "GET", lmPrefix+"/shared?includePrivateKey=true", nil).JSON(t, &list)
			for _, key := range list {
				switch key["name"] {
				case "web":
					if _, ok := key["privateKey"]; ok || key["expired"] != true {
						t.Errorf("listed expired key: %v, want no privateKey and expired true", key)
					}
				case "db":
					if key["privateKey"] == nil {
						t.Errorf("listed live key without its private half")
					}
				}
			}
			r = k.Bearer(reader).Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"k": map[string]any{"type": "key", "value": "web"}}})
			if r.StatusCode != http.StatusConflict || !strings.Contains(r.LMError(t).LocalizedMessage, "expired: web") {
				t.Errorf("substitution of the expired key: %d %s", r.StatusCode, r.Body)
			}
		})
	}
	// The replica counts what its expirer recorded (once the append has
	// returned, a moment after the events are in the log).
	eventually(t, 10*time.Second, "keysd_keys_expired_total reaching 2", func() bool {
		got, _ := metricValue(k.scrape(t), "keysd_keys_expired_total", nil)
		return got == 2
	})
	// Nothing released was recorded for the expired key.
	for _, r := range eventsOf(MustEvents(t, k), domain.TypePrivateKeyRead) {
		if r.Event.Owner == domain.SharedOwner("web") && r.Event.Time.After(expires) {
			t.Errorf("PrivateKeyRead of the expired key at %s", r.Event.Time)
		}
	}
}
