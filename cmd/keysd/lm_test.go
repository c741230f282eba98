package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"golang.org/x/crypto/ssh"
)

// codec sends LM requests in one format and names the response format.
type codec struct {
	Name        string
	ContentType string
	Do          func(tb testing.TB, c *client, method, path string, body any) *response
}

var codecs = []codec{
	{"JSON", "application/json", func(tb testing.TB, c *client, method, path string, body any) *response {
		tb.Helper()
		return c.Do(tb, method, path, body)
	}},
	{"YAML", "application/yaml", func(tb testing.TB, c *client, method, path string, body any) *response {
		tb.Helper()
		return c.YAML(tb, method, path, body)
	}},
}

// wantStatus fails tb unless r has status want.
func wantStatus(tb testing.TB, r *response, want int) {
	tb.Helper()
	if r.StatusCode != want {
		tb.Fatalf("%s %s: status %d, want %d: %s", r.Request.Method, r.Request.URL, r.StatusCode, want, r.Body)
	}
}

// wantLMError checks r is an LM error with status and a message holding
// every one of parts, in the format the client asked for.
func wantLMError(tb testing.TB, r *response, status int, contentType string, parts ...string) lmErrorJSON {
	tb.Helper()
	if r.StatusCode != status {
		tb.Errorf("%s %s: status %d, want %d: %s", r.Request.Method, r.Request.URL, r.StatusCode, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, contentType) {
		tb.Errorf("error Content-Type %q, want %q", ct, contentType)
	}
	e := r.LMError(tb)
	for _, p := range parts {
		if !strings.Contains(e.LocalizedMessage, p) {
			tb.Errorf("localizedMessage %q does not say %q", e.LocalizedMessage, p)
		}
	}
	return e
}

// checkKey checks a key answer describes pub under name, without a
// private half.
func checkKey(tb testing.TB, got infraKeyJSON, name string, pub ssh.PublicKey) {
	tb.Helper()
	if _, err := ulid.ParseStrict(got.ID); err != nil {
		tb.Errorf("id %q is not a ULID: %v", got.ID, err)
	}
	if got.Name != name || got.Scope != "shared" {
		tb.Errorf("name %q scope %q, want %q shared", got.Name, got.Scope, name)
	}
	if pub != nil {
		if gotPub := publicOf(tb, got.PublicKey); string(gotPub.Marshal()) != string(pub.Marshal()) {
			tb.Errorf("publicKey %q is not the key's public half", got.PublicKey)
		}
		if got.Fingerprint != ssh.FingerprintLegacyMD5(pub) || got.FingerprintSHA256 != ssh.FingerprintSHA256(pub) {
			tb.Errorf("fingerprints %q %q, want %q %q", got.Fingerprint, got.FingerprintSHA256, ssh.FingerprintLegacyMD5(pub), ssh.FingerprintSHA256(pub))
		}
	}
	if got.PrivateKey != "" {
		tb.Errorf("answer holds the private half")
	}
}

// TestLMSharedKeys runs every route of the shared pool, and each of its
// statuses, in JSON and in YAML.
func TestLMSharedKeys(t *testing.T) {
	k := MustStart(t, nil)
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	private, _ := MustToken(t, k, "private", "keys:private")
	for _, cd := range codecs {
		t.Run(cd.Name, func(t *testing.T) {
			c := k.Bearer(manager)
			do := func(t *testing.T, method, path string, body any) *response {
				t.Helper()
				r := cd.Do(t, c, method, path, body)
				if len(r.Body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), cd.ContentType) {
					t.Errorf("%s %s answered %q, want %s", method, path, r.Header.Get("Content-Type"), cd.ContentType)
				}
				return r
			}
			prefix := strings.ToLower(cd.Name) + "-"
			ed := MustKey(t)
			edPEM := MustOpenSSHPEM(t, ed)
			var created infraKeyJSON

			t.Run("CreateFromPrivate", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "web", "description": "web servers", "privateKey": edPEM})
				wantStatus(t, r, http.StatusCreated)
				r.Decode(t, &created)
				checkKey(t, created, prefix+"web", MustSSHPublic(t, ed))
				if created.Description != "web servers" {
					t.Errorf("description %q", created.Description)
				}
				if got, want := r.Header.Get("Location"), lmPrefix+"/shared/"+prefix+"web"; got != want {
					t.Errorf("Location %q, want %q", got, want)
				}
			})
			t.Run("CreateFromPublic", func(t *testing.T) {
				pub := MustKey(t)
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "public only", "publicKey": AuthorizedKey(t, pub, "ops")})
				wantStatus(t, r, http.StatusCreated)
				var got infraKeyJSON
				r.Decode(t, &got)
				checkKey(t, got, prefix+"public only", MustSSHPublic(t, pub))
				if got, want := r.Header.Get("Location"), lmPrefix+"/shared/"+prefix+"public%20only"; got != want {
					t.Errorf("Location %q, want %q", got, want)
				}
			})
			t.Run("CreateBothHalves", func(t *testing.T) {
				key := MustECDSA(t)
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "both", "publicKey": AuthorizedKey(t, key, "x"), "privateKey": MustOpenSSHPEM(t, key)})
				wantStatus(t, r, http.StatusCreated)
			})
			t.Run("ErrDuplicateName", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "web", "publicKey": AuthorizedKey(t, MustKey(t), "")})
				wantLMError(t, r, http.StatusConflict, cd.ContentType, prefix+"web", "already exists")
			})
			t.Run("ErrMismatchedHalves", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "mismatch", "publicKey": AuthorizedKey(t, MustKey(t), ""), "privateKey": MustOpenSSHPEM(t, MustKey(t))})
				wantLMError(t, r, http.StatusConflict, cd.ContentType, "do not match")
			})
			t.Run("ErrNoHalf", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "empty"})
				wantLMError(t, r, http.StatusBadRequest, cd.ContentType, "publicKey or privateKey")
			})
			t.Run("ErrNoName", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"publicKey": AuthorizedKey(t, MustKey(t), "")})
				wantLMError(t, r, http.StatusBadRequest, cd.ContentType, "name")
			})
			t.Run("ErrNameNotString", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", map[string]any{"name": 7, "publicKey": AuthorizedKey(t, MustKey(t), "")})
				wantLMError(t, r, http.StatusBadRequest, cd.ContentType, "name must be a string")
			})
			t.Run("ErrMalformedBody", func(t *testing.T) {
				r := do(t, "POST", lmPrefix+"/shared", "[1, 2")
				wantLMError(t, r, http.StatusBadRequest, cd.ContentType, "not a "+cd.Name)
			})
			t.Run("Get", func(t *testing.T) {
				for _, path := range []string{keyPath(prefix + "web"), lmPrefix + "/" + prefix + "web"} {
					r := do(t, "GET", path, nil)
					wantStatus(t, r, http.StatusOK)
					var got infraKeyJSON
					r.Decode(t, &got)
					if got != created {
						t.Errorf("GET %s = %+v, want %+v", path, got, created)
					}
				}
			})
			t.Run("ErrGetMissing", func(t *testing.T) {
				for _, path := range []string{keyPath(prefix + "nope"), lmPrefix + "/" + prefix + "nope"} {
					wantLMError(t, do(t, "GET", path, nil), http.StatusNotFound, cd.ContentType, prefix+"nope")
				}
			})
			t.Run("PrivateKeyByteForByte", func(t *testing.T) {
				r := cd.Do(t, k.Bearer(private), "GET", keyPath(prefix+"web")+"?includePrivateKey=true", nil)
				wantStatus(t, r, http.StatusOK)
				var got infraKeyJSON
				r.Decode(t, &got)
				if got.PrivateKey != edPEM {
					t.Errorf("privateKey %q, want %q", got.PrivateKey, edPEM)
				}
			})
			t.Run("Update", func(t *testing.T) {
				r := do(t, "PUT", keyPath(prefix+"web"), map[string]any{"description": "all web servers"})
				wantStatus(t, r, http.StatusNoContent)
				var got infraKeyJSON
				do(t, "GET", keyPath(prefix+"web"), nil).Decode(t, &got)
				want := created
				want.Description = "all web servers"
				if got != want {
					t.Errorf("after PUT: %+v, want %+v", got, want)
				}
			})
			t.Run("UpdateWholeObjectBack", func(t *testing.T) {
				// lmctl sends back the object it read, id and name included.
				var cur map[string]any
				do(t, "GET", keyPath(prefix+"web"), nil).Decode(t, &cur)
				cur["description"] = "sent back whole"
				wantStatus(t, do(t, "PUT", keyPath(prefix+"web"), cur), http.StatusNoContent)
				var got infraKeyJSON
				do(t, "GET", keyPath(prefix+"web"), nil).Decode(t, &got)
				if got.Description != "sent back whole" || got.ID != created.ID || got.PublicKey != created.PublicKey {
					t.Errorf("after PUT: %+v", got)
				}
			})
			t.Run("UpdatePrivateKey", func(t *testing.T) {
				next := MustRSA(t, 2048)
				nextPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(next)}))
				wantStatus(t, do(t, "PUT", keyPath(prefix+"web"), map[string]any{"privateKey": nextPEM}), http.StatusNoContent)
				var got infraKeyJSON
				cd.Do(t, k.Bearer(private), "GET", keyPath(prefix+"web")+"?includePrivateKey=true", nil).Decode(t, &got)
				if got.PrivateKey != nextPEM {
					t.Errorf("privateKey after PUT %q, want %q", got.PrivateKey, nextPEM)
				}
				got.PrivateKey = ""
				checkKey(t, got, prefix+"web", MustSSHPublic(t, next))
				if got.ID != created.ID || got.Description != "sent back whole" {
					t.Errorf("id or description changed: %+v", got)
				}
			})
			t.Run("UpdateRefusals", func(t *testing.T) {
				var before infraKeyJSON
				do(t, "GET", keyPath(prefix+"web"), nil).Decode(t, &before)
				enc, err := ssh.MarshalPrivateKeyWithPassphrase(MustKey(t), "", []byte("secret"))
				if err != nil {
					t.Fatal(err)
				}
				for _, tc := range []struct {
					name   string
					body   map[string]any
					status int
					says   string
				}{
					{"ErrMismatchedHalves", map[string]any{"publicKey": AuthorizedKey(t, MustKey(t), ""), "privateKey": MustOpenSSHPEM(t, MustKey(t))}, 409, "do not match"},
					{"ErrPublicNotOfStoredPrivate", map[string]any{"publicKey": AuthorizedKey(t, MustKey(t), "")}, 409, "do not match"},
					{"ErrPassphrase", map[string]any{"privateKey": string(pem.EncodeToMemory(enc))}, 400, "passphrase"},
					{"ErrInvalidPrivate", map[string]any{"privateKey": "not a key"}, 400, "privateKey is invalid"},
					{"ErrOtherID", map[string]any{"id": ulid.Make().String(), "description": "x"}, 400, "id"},
					{"ErrRename", map[string]any{"name": prefix + "renamed", "description": "x"}, 400, "cannot be changed"},
					{"ErrUnknownAlgorithm", map[string]any{"generate": "dsa"}, 400, "algorithm"},
				} {
					t.Run(tc.name, func(t *testing.T) {
						wantLMError(t, do(t, "PUT", keyPath(prefix+"web"), tc.body), tc.status, cd.ContentType, tc.says)
					})
				}
				var after infraKeyJSON
				do(t, "GET", keyPath(prefix+"web"), nil).Decode(t, &after)
				if after != before {
					t.Errorf("refused PUTs changed the key: %+v, was %+v", after, before)
				}
				wantLMError(t, do(t, "PUT", keyPath(prefix+"nope"), map[string]any{"description": "x"}), http.StatusNotFound, cd.ContentType, prefix+"nope")
			})
			t.Run("ListSortedByName", func(t *testing.T) {
				for _, n := range []string{"zulu", "alpha", "mike"} {
					wantStatus(t, do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + n, "generate": "ed25519"}), http.StatusCreated)
				}
				r := do(t, "GET", lmPrefix+"/shared", nil)
				wantStatus(t, r, http.StatusOK)
				var list []infraKeyJSON
				r.Decode(t, &list)
				var names []string
				for _, key := range list {
					if key.PrivateKey != "" {
						t.Errorf("list shows the private half of %s", key.Name)
					}
					if strings.HasPrefix(key.Name, prefix) {
						names = append(names, key.Name)
					}
				}
				want := []string{prefix + "alpha", prefix + "both", prefix + "mike", prefix + "public only", prefix + "web", prefix + "zulu"}
				if !slices.Equal(names, want) {
					t.Errorf("names %q, want %q", names, want)
				}
				if !slices.IsSortedFunc(list, func(a, b infraKeyJSON) int { return strings.Compare(a.Name, b.Name) }) {
					t.Errorf("list not sorted by name")
				}
			})
			t.Run("Delete", func(t *testing.T) {
				wantStatus(t, do(t, "DELETE", keyPath(prefix+"web"), nil), http.StatusNoContent)
				wantLMError(t, do(t, "GET", keyPath(prefix+"web"), nil), http.StatusNotFound, cd.ContentType, prefix+"web")
				wantLMError(t, do(t, "DELETE", keyPath(prefix+"web"), nil), http.StatusNotFound, cd.ContentType, prefix+"web")
				// The name is free again.
				wantStatus(t, do(t, "POST", lmPrefix+"/shared", map[string]any{"name": prefix + "web", "generate": "ed25519"}), http.StatusCreated)
			})
			t.Run("InstanceKeysOfUnknownInstance", func(t *testing.T) {
				r := do(t, "GET", lmPrefix+"/instances/no-such-instance", nil)
				wantStatus(t, r, http.StatusOK)
				var list []infraKeyJSON
				r.Decode(t, &list)
				if len(list) != 0 {
					t.Errorf("unknown instance has keys: %+v", list)
				}
			})
		})
	}
}

// TestLMContentTypes checks YAML bodies keep PEM blocks byte for byte,
// and that other content types are refused with 415.
func TestLMContentTypes(t *testing.T) {
	k := MustStart(t, nil)
	c := k.Admin
	key := MustRSA(t, 2048)
	keyPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))

	t.Run("YAMLLiteralBlockIn", func(t *testing.T) {
		// As a person writes it, following LM's docs.
		var b strings.Builder
		b.WriteString("name: handwritten\ndescription: a YAML literal block\nprivateKey: |\n")
		for _, line := range strings.SplitAfter(strings.TrimSuffix(keyPEM, "\n"), "\n") {
			b.WriteString("  " + line)
		}
		b.WriteString("\n")
		r := c.DoWith(t, "POST", lmPrefix+"/shared", b.String(), http.Header{"Content-Type": {"application/yaml"}})
		wantStatus(t, r, http.StatusCreated)
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("without Accept: answered %q, want JSON", ct)
		}
	})
	t.Run("YAMLOut", func(t *testing.T) {
		r := c.DoWith(t, "GET", keyPath("handwritten")+"?includePrivateKey=true", nil, http.Header{"Accept": {"application/yaml"}})
		wantStatus(t, r, http.StatusOK)
		var got infraKeyJSON
		r.Decode(t, &got)
		if got.PrivateKey != keyPEM {
			t.Errorf("privateKey through YAML %q, want %q", got.PrivateKey, keyPEM)
		}
		if !strings.Contains(string(r.Body), "privateKey: |") {
			t.Errorf("YAML answer does not keep the PEM block readable:\n%s", r.Body)
		}
	})
	t.Run("JSONOut", func(t *testing.T) {
		var got infraKeyJSON
		c.Do(t, "GET", keyPath("handwritten")+"?includePrivateKey=true", nil).JSON(t, &got)
		if got.PrivateKey != keyPEM {
			t.Errorf("privateKey through JSON %q, want %q", got.PrivateKey, keyPEM)
		}
	})
	t.Run("ContentTypeParameters", func(t *testing.T) {
		r := c.DoWith(t, "POST", lmPrefix+"/shared", `{"name": "charset", "generate": "ed25519"}`, http.Header{"Content-Type": {"application/json; charset=utf-8"}})
		wantStatus(t, r, http.StatusCreated)
		r = c.DoWith(t, "POST", lmPrefix+"/shared", "name: x-yaml\ngenerate: ed25519\n", http.Header{"Content-Type": {"application/x-yaml"}, "Accept": {"application/x-yaml"}})
		wantStatus(t, r, http.StatusCreated)
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		r := c.YAML(t, "POST", lmPrefix+"/shared", map[string]any{"name": "big", "description": strings.Repeat("a", 100001)})
		wantLMError(t, r, http.StatusRequestEntityTooLarge, "application/yaml", "100000")
	})
	t.Run("ErrNoRoute", func(t *testing.T) {
		// A method no route has: Echo's group catch-all answers 404 where
		// 405 would be more precise; either way, in LM's error format.
		r := c.Do(t, "PATCH", keyPath("handwritten"), map[string]any{})
		if r.StatusCode != http.StatusNotFound && r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("PATCH: %d %s", r.StatusCode, r.Body)
		}
		r.LMError(t)
		wantLMError(t, c.YAML(t, "GET", keyPath("handwritten")+"/more", nil), http.StatusNotFound, "application/yaml", "does not exist")
	})
	t.Run("ErrUnsupported", func(t *testing.T) {
		for _, tc := range []struct{ method, path, ct, accept, wantCT string }{
			{"POST", lmPrefix + "/shared", "text/plain", "", "application/json"},
			{"POST", lmPrefix + "/shared", "application/xml", "application/yaml", "application/yaml"},
			{"POST", lmPrefix + "/shared", "application/x-www-form-urlencoded", "", "application/json"},
			{"PUT", keyPath("handwritten"), "text/plain", "", "application/json"},
			{"POST", lmPrefix + "/substitute", "text/html", "", "application/json"},
		} {
			h := http.Header{"Content-Type": {tc.ct}}
			if tc.accept != "" {
				h.Set("Accept", tc.accept)
			}
			r := c.DoWith(t, tc.method, tc.path, "name=x", h)
			wantLMError(t, r, http.StatusUnsupportedMediaType, tc.wantCT, "Content-Type is not supported")
			// Errors never echo what the client sent.
			if strings.Contains(string(r.Body), tc.ct) {
				t.Errorf("error echoes the Content-Type %q: %s", tc.ct, r.Body)
			}
		}
	})
}

// TestLMPrivateKeyFormats creates keys from each private format keysd
// reads and refuses the ones it must not store.
func TestLMPrivateKeyFormats(t *testing.T) {
	k := MustStart(t, nil)
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	private, _ := MustToken(t, k, "private", "keys:private")
	c := k.Bearer(manager)
	for _, p := range MustPrivateKeys(t) {
		t.Run(p.Format, func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": p.Format, "privateKey": p.PEM})
			wantStatus(t, r, http.StatusCreated)
			var got infraKeyJSON
			r.JSON(t, &got)
			checkKey(t, got, p.Format, p.Public)
			if got.PublicKey != p.AuthorizedLine() {
				t.Errorf("derived publicKey %q, want %q", got.PublicKey, p.AuthorizedLine())
			}
			k.Bearer(private).Do(t, "GET", keyPath(p.Format)+"?includePrivateKey=true", nil).JSON(t, &got)
			if got.PrivateKey != p.PEM {
				t.Errorf("privateKey %q, want %q", got.PrivateKey, p.PEM)
			}
		})
	}

	ed := MustKey(t)
	encOpenSSH, err := ssh.MarshalPrivateKeyWithPassphrase(ed, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 legacy encrypted PEM is what old tools write; it must be refused.
	encLegacy, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(MustRSA(t, 2048)), []byte("secret"), x509.PEMCipherAES256) //nolint:staticcheck
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed)
	if err != nil {
		t.Fatal(err)
	}
	// Only the block type matters to keysd: it refuses before decrypting.
	encPKCS8 := &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}
	for _, tc := range []struct {
		name, key, says string
	}{
		{"ErrPassphraseOpenSSH", string(pem.EncodeToMemory(encOpenSSH)), "passphrase"},
		{"ErrPassphraseLegacyPEM", string(pem.EncodeToMemory(encLegacy)), "passphrase"},
		{"ErrPassphrasePKCS8", string(pem.EncodeToMemory(encPKCS8)), "passphrase"},
		{"ErrShortRSA", MustOpenSSHPEM(t, MustRSA(t, 1024)), "2048"},
		{"ErrPublicKeyAsPrivate", AuthorizedKey(t, ed, ""), "send it as publicKey"},
		{"ErrNotPEM", "hello", "not a PEM private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": tc.name, "privateKey": tc.key})
			e := wantLMError(t, r, http.StatusBadRequest, "application/json", tc.says)
			if strings.Contains(e.LocalizedMessage, "BEGIN") {
				t.Errorf("message quotes the key: %q", e.LocalizedMessage)
			}
		})
	}
	t.Run("RefusalsLeftNothing", func(t *testing.T) {
		var list []infraKeyJSON
		c.Do(t, "GET", lmPrefix+"/shared", nil).JSON(t, &list)
		if got, want := len(list), len(MustPrivateKeys(t)); got != want {
			t.Errorf("%d keys in the pool, want %d", got, want)
		}
	})
}

// TestLMGenerate asks keysd to generate each type of key pair.
func TestLMGenerate(t *testing.T) {
	k := MustStart(t, nil)
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	reader, _ := MustToken(t, k, "reader", "keys:read")
	private, _ := MustToken(t, k, "private", "keys:private")
	for _, tc := range []struct {
		alg, sshType string
		bits         int
	}{
		{"ed25519", ssh.KeyAlgoED25519, 256},
		{"rsa-3072", ssh.KeyAlgoRSA, 3072},
		{"rsa-4096", ssh.KeyAlgoRSA, 4096},
		{"ecdsa-p256", ssh.KeyAlgoECDSA256, 256},
		{"ecdsa-p384", ssh.KeyAlgoECDSA384, 384},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			name := "gen-" + tc.alg
			r := k.Bearer(manager).Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "generate": tc.alg})
			wantStatus(t, r, http.StatusCreated)
			var got infraKeyJSON
			r.JSON(t, &got)
			checkKey(t, got, name, nil)
			pub := publicOf(t, got.PublicKey)
			if pub.Type() != tc.sshType {
				t.Errorf("type %s, want %s", pub.Type(), tc.sshType)
			}
			if tc.sshType == ssh.KeyAlgoRSA {
				if bits := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(interface{ Size() int }).Size() * 8; bits != tc.bits {
					t.Errorf("RSA of %d bits, want %d", bits, tc.bits)
				}
			}
			if got.Fingerprint != ssh.FingerprintLegacyMD5(pub) {
				t.Errorf("fingerprint %s, want %s", got.Fingerprint, ssh.FingerprintLegacyMD5(pub))
			}

			wantLMError(t, k.Bearer(reader).Do(t, "GET", keyPath(name)+"?includePrivateKey=true", nil), http.StatusForbidden, "application/json", "keys:private")
			var withPrivate infraKeyJSON
			r = k.Bearer(private).Do(t, "GET", keyPath(name)+"?includePrivateKey=true", nil)
			wantStatus(t, r, http.StatusOK)
			r.JSON(t, &withPrivate)
			if withPrivate.PrivateKey == "" {
				t.Fatal("no private half for a privileged caller")
			}
			if derived := publicOfPEM(t, withPrivate.PrivateKey); string(derived.Marshal()) != string(pub.Marshal()) {
				t.Errorf("the generated private half does not belong to the public half")
			}
		})
	}
	for _, tc := range []struct {
		name string
		body map[string]any
		says string
	}{
		{"ErrUnknownAlgorithm", map[string]any{"name": "gen-dsa", "generate": "dsa"}, "algorithm must be one of"},
		{"ErrGenerateWithHalf", map[string]any{"name": "gen-both", "generate": "ed25519", "publicKey": AuthorizedKey(t, MustKey(t), "")}, "cannot be combined"},
		{"ErrGenerateNotString", map[string]any{"name": "gen-num", "generate": 25519}, "generate must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantLMError(t, k.Bearer(manager).Do(t, "POST", lmPrefix+"/shared", tc.body), http.StatusBadRequest, "application/json", tc.says)
		})
	}
	t.Run("UpdateGenerates", func(t *testing.T) {
		var before, after infraKeyJSON
		k.Bearer(private).Do(t, "GET", keyPath("gen-ed25519")+"?includePrivateKey=true", nil).JSON(t, &before)
		wantStatus(t, k.Bearer(manager).Do(t, "PUT", keyPath("gen-ed25519"), map[string]any{"generate": "ecdsa-p384"}), http.StatusNoContent)
		k.Bearer(private).Do(t, "GET", keyPath("gen-ed25519")+"?includePrivateKey=true", nil).JSON(t, &after)
		if after.ID != before.ID || after.PrivateKey == before.PrivateKey || publicOf(t, after.PublicKey).Type() != ssh.KeyAlgoECDSA384 {
			t.Errorf("after PUT generate: %+v", after)
		}
		if derived := publicOfPEM(t, after.PrivateKey); string(derived.Marshal()) != string(publicOf(t, after.PublicKey).Marshal()) {
			t.Errorf("the generated private half does not belong to the public half")
		}
	})
}
