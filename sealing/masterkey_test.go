package sealing_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/sealing"
)

func TestMasterKey(t *testing.T) {
	t.Run("EncodeParseRoundTrip", func(t *testing.T) {
		m := MustNewMasterKey(t)
		got, err := sealing.ParseMasterKey("  " + m.Encode() + "\n")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := got.ID(), m.ID(); got != want {
			t.Errorf("ID = %q, want %q", got, want)
		}
		if got, want := got.Encode(), m.Encode(); got != want {
			t.Error("Encode after Parse differs")
		}
	})

	t.Run("IDIsShortHex", func(t *testing.T) {
		m := MustNewMasterKey(t)
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(m.ID()) {
			t.Errorf("ID = %q, want 16 lowercase hex digits", m.ID())
		}
		if MustNewMasterKey(t).ID() == m.ID() {
			t.Error("two new master keys have the same id")
		}
	})

	t.Run("IDIsStable", func(t *testing.T) {
		// The id is stored next to every wrapped data key: changing how it
		// is derived would orphan them all. The expected value was computed
		// independently: HMAC-SHA256(key 00..1f, "infrakeys master key id").
		m, err := sealing.ParseMasterKey("infrakeys-master-key-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := m.ID(), "ed129efea20bc04e"; got != want {
			t.Errorf("ID = %q, want %q", got, want)
		}
	})
}

func TestParseMasterKey(t *testing.T) {
	for _, tt := range []struct {
		name  string
		input string
	}{
		{"Empty", ""},
		{"Blank", " \n\t"},
		{"Garbage", "correct horse battery staple"},
		{"NoPrefix", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
		{"WrongVersion", "infrakeys-master-key-v2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
		{"PrefixOnly", "infrakeys-master-key-v1:"},
		{"NotBase64", "infrakeys-master-key-v1:this is not base64 at all!!"},
		{"URLBase64", "infrakeys-master-key-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
		{"TooShort", "infrakeys-master-key-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="},
		{"TooLong", "infrakeys-master-key-v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"},
		{"AllZero", "infrakeys-master-key-v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sealing.ParseMasterKey(tt.input)
			if err == nil {
				t.Fatalf("ParseMasterKey succeeded with id %s", m.ID())
			}
			if !errors.Is(err, sealing.ErrInvalidMasterKey) {
				t.Errorf("error %v does not wrap ErrInvalidMasterKey", err)
			}
			secret := strings.TrimPrefix(strings.TrimSpace(tt.input), "infrakeys-master-key-v1:")
			if len(secret) > 4 && strings.Contains(err.Error(), secret) {
				t.Errorf("error echoes the input: %v", err)
			}
		})
	}
}

func TestMasterKeyDoesNotLeak(t *testing.T) {
	m := MustNewMasterKey(t)

	t.Run("String", func(t *testing.T) {
		if got, want := m.String(), "infrakeys-master-key("+m.ID()+")"; got != want {
			t.Errorf("String = %q, want %q", got, want)
		}
	})

	t.Run("Format", func(t *testing.T) {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
			assertNoSecret(t, m, verb+" of *MasterKey", fmt.Sprintf(verb, m))
			// A dereferenced value has none of the pointer methods, so fmt
			// walks its fields.
			assertNoSecret(t, m, verb+" of MasterKey", fmt.Sprintf(verb, *m))
			assertNoSecret(t, m, verb+" of a struct holding it", fmt.Sprintf(verb, struct{ K *sealing.MasterKey }{m}))
		}
		if got := fmt.Sprintf("%v", m); !strings.Contains(got, m.ID()) {
			t.Errorf("%%v = %q, want it to name the id", got)
		}
		if got := fmt.Sprintf("%#v", m); !strings.Contains(got, m.ID()) {
			t.Errorf("%%#v = %q, want it to name the id", got)
		}
	})

	t.Run("ErrorWrapping", func(t *testing.T) {
		err := fmt.Errorf("unwrap with %v: %w", m, errors.New("boom"))
		assertNoSecret(t, m, "error", err.Error())
	})

	t.Run("JSONRefused", func(t *testing.T) {
		for name, v := range map[string]any{
			"Pointer":  m,
			"InStruct": struct{ Key *sealing.MasterKey }{m},
			"MapValue": map[string]*sealing.MasterKey{"k": m},
		} {
			out, err := json.Marshal(v)
			if err == nil {
				t.Errorf("%s: json.Marshal succeeded: %s", name, out)
			}
			assertNoSecret(t, m, name+" json output", string(out))
			if err != nil {
				assertNoSecret(t, m, name+" json error", err.Error())
			}
		}
	})

	t.Run("JSONOfValue", func(t *testing.T) {
		// A value has no MarshalText, but also no exported fields.
		out, err := json.Marshal(*m)
		if err != nil {
			t.Fatal(err)
		}
		assertNoSecret(t, m, "json of value", string(out))
	})

	t.Run("Slog", func(t *testing.T) {
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("text", "kek", m)
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("json", "kek", m)
		assertNoSecret(t, m, "slog", buf.String())
		if got, want := strings.Count(buf.String(), m.ID()), 2; got != want {
			t.Errorf("slog output names the id %d times, want %d:\n%s", got, want, buf.String())
		}
	})
}
