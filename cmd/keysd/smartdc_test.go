package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The older CloudAPI CLI, npm package smartdc (version 9), manages keys
// against keysd with sdc-listkeys, sdc-createkey, sdc-getkey and
// sdc-deletekey. It signs only the Date header, so it needs
// --allow-legacy-signatures. It reads its private key from ~/.ssh (or an
// ssh-agent, left out here). Its bundled sshpk misreads some ed25519
// private keys, so it signs here with RSA and ECDSA keys. .ci/run installs
// it under .ci/node_modules/smartdc/bin, where npm leaves its programs
// (it links none into .bin); elsewhere set KEYSD_SMARTDC to the path of
// sdc-listkeys. Outside CI a missing smartdc skips the test; in CI it fails
// it.

// smartdc returns the smartdc commands, by name without "sdc-", run in
// home.
func smartdc(t *testing.T, home *cliHome, vars ...string) func(cmd string) cliTool {
	t.Helper()
	bin := filepath.Dir(findTool(t, "sdc-listkeys", "KEYSD_SMARTDC", "../../.ci/node_modules/smartdc/bin/sdc-listkeys"))
	return func(cmd string) cliTool { return home.Tool(filepath.Join(bin, "sdc-"+cmd), vars...) }
}

// smartdcSigners makes the keys smartdc signs with in home's ~/.ssh, and
// creates the account login with the first.
func smartdcSigners(t *testing.T, k *keysd, home *cliHome, login string) []sshKey {
	t.Helper()
	signers := []sshKey{
		home.SigningKey(t, "id_rsa", "sdc-rsa", "-t", "rsa", "-b", "2048"),
		home.SigningKey(t, "id_ecdsa", "sdc-ecdsa", "-t", "ecdsa", "-b", "256"),
	}
	mustAccountWithKeyFile(t, k, login, signers[0])
	return signers
}

func TestSmartdcCLI(t *testing.T) {
	home := newCLIHome(t)
	k := MustStart(t, map[string]string{"KEYSD_ALLOW_LEGACY_SIGNATURES": "true"})
	signers := smartdcSigners(t, k, home, "sdc")
	sdc := smartdc(t, home, "SDC_URL="+k.URL, "SDC_ACCOUNT=sdc")

	// The RSA key (the account's first) adds the ECDSA one.
	added := decodeKeys(t, sdc("createkey").With("SDC_KEY_ID="+signers[0].MD5).Run(t, signers[1].Path+".pub"))
	if len(added) != 1 || added[0].Fingerprint != signers[1].MD5 {
		t.Fatalf("createkey printed %+v, want fingerprint %s", added, signers[1].MD5)
	}

	for i, signer := range signers {
		t.Run(strings.TrimPrefix(signer.Comment, "sdc-"), func(t *testing.T) {
			// Alternate the two forms of SDC_KEY_ID smartdc accepts.
			keyID := signer.MD5
			if i%2 == 1 {
				keyID = signer.SHA256
			}
			cmd := func(name string) cliTool { return sdc(name).With("SDC_KEY_ID=" + keyID) }

			listed := decodeKeys(t, cmd("listkeys").Run(t))
			if len(listed) != len(signers) {
				t.Errorf("listkeys printed %d keys, want %d: %+v", len(listed), len(signers), listed)
			}
			for _, want := range signers {
				found := false
				for _, got := range listed {
					found = found || got.Fingerprint == want.MD5
				}
				if !found {
					t.Errorf("listkeys lacks %s: %+v", want.MD5, listed)
				}
			}

			// smartdc escapes ':' and '+' in the path but not '/': take a
			// key whose SHA256 fingerprint has one.
			extra := home.SpareKey(t, "extra-"+signer.Comment, "comment", "-t", "ed25519")
			for n := 0; !loneSlash(extra.SHA256); n++ {
				extra = home.SpareKey(t, fmt.Sprintf("extra-%s-%d", signer.Comment, n), "comment", "-t", "ed25519")
			}
			name := "extra-" + signer.Comment
			created := decodeKeys(t, cmd("createkey").Run(t, "--name", name, extra.Path+".pub"))
			if len(created) != 1 || created[0].Name != name || created[0].Fingerprint != extra.MD5 {
				t.Errorf("createkey printed %+v, want %s %s", created, name, extra.MD5)
			}
			wantLine := strings.TrimSpace(extra.Line(t))
			for _, ref := range []string{name, extra.MD5, extra.SHA256} {
				got := decodeKeys(t, cmd("getkey").Run(t, ref))
				if len(got) != 1 || got[0].Name != name || got[0].Fingerprint != extra.MD5 || got[0].Key != wantLine {
					t.Errorf("getkey %s printed %+v, want %s %s %s", ref, got, name, extra.MD5, wantLine)
				}
			}

			// The same key again: CloudAPI's InvalidArgument, which
			// smartdc prints.
			if out, errOut, err := cmd("createkey").Try("--name", "again", extra.Path+".pub"); err == nil {
				t.Errorf("duplicate createkey succeeded: %s", out)
			} else if !strings.Contains(errOut, "already exists") {
				t.Errorf("duplicate createkey: %q, want keysd's InvalidArgument message", errOut)
			}

			cmd("deletekey").Run(t, name)
			if out, errOut, err := cmd("getkey").Try(name); err == nil {
				t.Errorf("getkey after deletekey succeeded: %s", out)
			} else if !strings.Contains(errOut, "does not exist") {
				t.Errorf("getkey after deletekey: %q, want keysd's ResourceNotFound message", errOut)
			}
		})
	}

	// Flags instead of the environment.
	t.Run("Flags", func(t *testing.T) {
		bare := smartdc(t, home)("listkeys")
		listed := decodeKeys(t, bare.Run(t, "--url", k.URL, "--account", "sdc", "--keyId", signers[1].SHA256))
		if len(listed) != len(signers) {
			t.Errorf("listkeys with flags printed %+v", listed)
		}
	})
}

// Without the switch every smartdc request is refused: it signs no
// (request-target).
func TestSmartdcCLIWithoutLegacySwitch(t *testing.T) {
	home := newCLIHome(t)
	k := MustStart(t, nil)
	signers := smartdcSigners(t, k, home, "sdc")
	sdc := smartdc(t, home, "SDC_URL="+k.URL, "SDC_ACCOUNT=sdc", "SDC_KEY_ID="+signers[0].MD5)

	extra := home.SpareKey(t, "extra", "extra", "-t", "ed25519")
	for _, c := range []struct {
		cmd  string
		args []string
	}{
		{"listkeys", nil},
		{"createkey", []string{"--name", "extra", extra.Path + ".pub"}},
		{"getkey", []string{signers[0].MD5}},
		{"deletekey", []string{signers[0].MD5}},
	} {
		if out, errOut, err := sdc(c.cmd).Try(c.args...); err == nil {
			t.Errorf("sdc-%s succeeded without the switch: %s", c.cmd, out)
		} else if !strings.Contains(errOut, "InvalidCredentials") && !strings.Contains(errOut, "Invalid HTTP signature credentials") {
			t.Errorf("sdc-%s: %q, want InvalidCredentials", c.cmd, errOut)
		}
	}
	if log := k.stderr.String(); !strings.Contains(log, `"reason":"(request-target) is not signed"`) {
		t.Errorf("keysd did not refuse for the missing (request-target):\n%s", log)
	}
	r := k.Admin.Do(t, "GET", "/sdc/keys", nil)
	var keys []cliKey
	r.JSON(t, &keys)
	if len(keys) != 1 || keys[0].Fingerprint != signers[0].MD5 {
		t.Errorf("keys after refused calls: %s", r.Body)
	}
}
