package http_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	khttp "github.com/infrakeys/infrakeys/http"
	"go.yaml.in/yaml/v3"
)

func TestDecodeBody(t *testing.T) {
	cases := []struct {
		name   string
		format string
		body   string
		want   map[string]any // when ok
		code   string         // domain error code, when refused
		msg    string         // part of the message, when refused
	}{
		{"OKJSON", "json", `{"a":"x","n":12345678901234567890,"b":[true,null],"o":{"k":"é"}}`,
			map[string]any{"a": "x", "n": json.Number("12345678901234567890"), "b": []any{true, nil}, "o": map[string]any{"k": "é"}}, "", ""},
		{"OKJSONSurrogatePair", "json", `{"a":"\ud83d\ude00"}`, map[string]any{"a": "😀"}, "", ""},
		{"OKJSONEscapedBackslashU", "json", `{"a":"\\ud800"}`, map[string]any{"a": `\ud800`}, "", ""},
		{"OKEmpty", "json", "  ", map[string]any{}, "", ""},
		{"ErrJSONDuplicate", "json", `{"key":"A","key":"B"}`, nil, domain.EINVALID, "key is given more than once"},
		{"ErrJSONDuplicateDeep", "json", `{"p":{"q":[{"x":1,"x":2}]}}`, nil, domain.EINVALID, "p.q[0].x is given more than once"},
		{"ErrJSONInvalidUTF8", "json", "{\"name\":\"a\xffb\"}", nil, domain.EINVALID, "name is not valid UTF-8"},
		{"ErrJSONInvalidUTF8Deep", "json", "{\"a\":\"ok\",\"p\":{\"q\":[\"ok\",\"a\xffb\"]}}", nil, domain.EINVALID, "p.q[1] is not valid UTF-8"},
		{"ErrJSONInvalidUTF8Name", "json", "{\"p\":{\"a\xffb\":1}}", nil, domain.EINVALID, "a member name in p is not valid UTF-8"},
		{"ErrJSONLoneSurrogate", "json", `{"name":"a\ud800b"}`, nil, domain.EINVALID, "name is not valid UTF-8"},
		{"ErrJSONLoneLowSurrogate", "json", `{"a":"\\u","name":"\udc00"}`, nil, domain.EINVALID, "name is not valid UTF-8"},
		{"ErrJSONSurrogateWithoutLow", "json", `{"name":"\ud800\u0041"}`, nil, domain.EINVALID, "name is not valid UTF-8"},
		{"ErrJSONSyntax", "json", `{"a":}`, nil, domain.EMALFORMED, "not a JSON object"},
		{"ErrJSONNotObject", "json", `["a"]`, nil, domain.EMALFORMED, "not a JSON object"},
		{"ErrJSONTwoValues", "json", `{} {}`, nil, domain.EMALFORMED, "more than one JSON value"},
		{"ErrJSONTooDeep", "json", strings.Repeat(`{"a":`, 11) + "1" + strings.Repeat("}", 11), nil, domain.EINVALID, "nested more than 10 levels"},
		{"OKYAML", "yaml", "a: x\nn: 0x1F\nf: 1.5\nd: 2001-12-14\nb: [true, ~]\no: {k: é}\nq: !!str 12\n",
			map[string]any{"a": "x", "n": json.Number("31"), "f": json.Number("1.5"), "d": "2001-12-14", "b": []any{true, nil}, "o": map[string]any{"k": "é"}, "q": "12"}, "", ""},
		{"OKYAMLAlias", "yaml", "a: &x {k: v}\nb: *x\n", map[string]any{"a": map[string]any{"k": "v"}, "b": map[string]any{"k": "v"}}, "", ""},
		{"OKYAMLComments", "yaml", "# nothing\n", map[string]any{}, "", ""},
		{"ErrYAMLDuplicate", "yaml", "key: A\nkey: B\n", nil, domain.EINVALID, "key is given more than once"},
		{"ErrYAMLDuplicateDeep", "yaml", "p:\n  q:\n  - {x: 1, x: 2}\n", nil, domain.EINVALID, "p.q[0].x is given more than once"},
		{"ErrYAMLDuplicateThroughAlias", "yaml", "a: &k x\n*k : 1\nx: 2\n", nil, domain.EINVALID, "x is given more than once"},
		{"ErrYAMLBinary", "yaml", "name: !!binary aGk=\n", nil, domain.EINVALID, `name has the YAML tag "!!binary"`},
		{"ErrYAMLPython", "yaml", "name: !!python/object:os.system [ls]\n", nil, domain.EINVALID, "YAML tag"},
		{"ErrYAMLCustomTag", "yaml", "name: !foo x\n", nil, domain.EINVALID, `YAML tag "!foo"`},
		{"ErrYAMLCustomTagOnMap", "yaml", "p: !foo {a: b}\n", nil, domain.EINVALID, `p has the YAML tag "!foo"`},
		{"ErrYAMLTimestampTag", "yaml", "d: !!timestamp 2001-12-14\n", nil, domain.EINVALID, "!!timestamp"},
		{"ErrYAMLMerge", "yaml", "base: &b {x: 1}\np:\n  <<: *b\n  y: 2\n", nil, domain.EINVALID, "merge key"},
		{"ErrYAMLIntKey", "yaml", "1: x\n", nil, domain.EINVALID, "key that is not a string"},
		{"ErrYAMLInvalidUTF8", "yaml", "a: 1\nname: \"a\xffb\"\n", nil, domain.EINVALID, "request body, line 2, is not valid UTF-8"},
		{"ErrYAMLLoneSurrogate", "yaml", "name: \"\\ud800\"\n", nil, domain.EMALFORMED, "not a YAML mapping"},
		{"ErrYAMLInf", "yaml", "x: .inf\n", nil, domain.EINVALID, "x is not a valid finite number"},
		{"ErrYAMLTwoDocuments", "yaml", "a: 1\n---\nb: 2\n", nil, domain.EMALFORMED, "more than one YAML document"},
		{"ErrYAMLNotMapping", "yaml", "- a\n", nil, domain.EMALFORMED, "not a YAML mapping"},
		{"ErrYAMLTooDeep", "yaml", "a: " + strings.Repeat("[", 10) + strings.Repeat("]", 10) + "\n", nil, domain.EINVALID, "a[0][0][0][0][0][0][0][0][0] is nested more than 10 levels"},
		{"ErrYAMLRecursiveAlias", "yaml", "a: &a [*a]\n", nil, domain.ETOOLARGE, "too large once decoded"},
		{"ErrYAMLRecursiveAliasDeep", "yaml", "a: &a [*a]\n#" + strings.Repeat("-", 200) + "\n", nil, domain.EINVALID, "nested more than 10 levels"},
		{"ErrYAMLBillionLaughs", "yaml", billionLaughs(9), nil, domain.ETOOLARGE, "too large once decoded"},
		{"OKForm", "form", "key=ssh-ed25519+AAAA&name=a%2Fb", map[string]any{"key": "ssh-ed25519 AAAA", "name": "a/b"}, "", ""},
		{"ErrFormDuplicate", "form", "key=a&key=b", nil, domain.EINVALID, "key is given more than once"},
		{"ErrFormInvalidUTF8", "form", "name=a%FFb", nil, domain.EINVALID, "not valid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := khttp.DecodeBody([]byte(c.body), c.format)
			if c.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("got %#v, want %#v", got, c.want)
				}
				return
			}
			if got, want := domain.ErrorCode(err), c.code; got != want {
				t.Fatalf("code %q (%v), want %q", got, err, want)
			}
			if msg := domain.ErrorMessage(err); !strings.Contains(msg, c.msg) {
				t.Errorf("message %q does not say %q", msg, c.msg)
			}
		})
	}
}

// billionLaughs is a YAML body in which each of levels anchors holds ten
// aliases of the one before: small on the wire, 10^levels strings once
// expanded.
func billionLaughs(levels int) string {
	var b strings.Builder
	b.WriteString("l0: &l0 \"lol\"\n")
	for i := 1; i <= levels; i++ {
		prev := "*l" + string(rune('0'+i-1))
		b.WriteString("l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(prev)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// TestDecodeBodyBound decodes bodies that expand through aliases and
// measures what the decode allocates and what the decoded value takes as
// JSON: a body that would grow past DecodeMultiple times its size is
// refused, having allocated no more than a fixed multiple of its size.
func TestDecodeBodyBound(t *testing.T) {
	// What decoding may allocate per byte of body, above a fixed 64 KiB:
	// yaml.v3's node tree takes most of it. Measured at about 260 for the
	// worst body below (a flow mapping of one-letter keys).
	const allocMultiple = 300
	check := func(t *testing.T, body []byte, format string) (map[string]any, error) {
		t.Helper()
		var v map[string]any
		var err error
		allocated := measureAlloc(func() { v, err = khttp.DecodeBody(body, format) })
		t.Logf("%d bytes allocated %d (%d per byte)", len(body), allocated, allocated/uint64(len(body)))
		if allocated > uint64(allocMultiple*len(body)+64<<10) {
			t.Errorf("decoding %d bytes allocated %d bytes, more than %d times", len(body), allocated, allocMultiple)
		}
		if err == nil {
			// As an answer echoes it: compact JSON, or YAML indented by
			// two spaces a level.
			asJSON, _ := json.Marshal(v)
			var asYAML bytes.Buffer
			enc := yaml.NewEncoder(&asYAML)
			enc.SetIndent(2)
			if err := enc.Encode(v); err != nil {
				t.Fatal(err)
			}
			for _, out := range [][]byte{asJSON, asYAML.Bytes()} {
				if ratio := float64(len(out)) / float64(len(body)); ratio > khttp.DecodeMultiple {
					t.Errorf("%d bytes decoded to %d bytes, %.1f times: %.200s", len(body), len(out), ratio, out)
				}
			}
		}
		return v, err
	}
	t.Run("Aliases", func(t *testing.T) {
		for levels := 1; levels <= 9; levels++ {
			_, err := check(t, []byte(billionLaughs(levels)), "yaml")
			switch {
			case levels <= 1 && err != nil:
				t.Errorf("%d levels refused, though it fits: %v", levels, err)
			case levels >= 3 && domain.ErrorCode(err) != domain.ETOOLARGE:
				t.Errorf("%d levels: %v, want %s", levels, err, domain.ETOOLARGE)
			}
		}
	})
	// The largest bodies of the smallest values (the most decoded values
	// per byte), and deep ones (the most indentation in a YAML answer).
	for _, c := range []struct{ name, format, body, code string }{
		{"FlatYAML", "yaml", "a: [" + strings.Repeat("x,", 49000) + "x]\n", ""},
		{"ErrFlatYAMLMapping", "yaml", "a: {" + strings.Repeat("x,", 49000) + "x}\n", domain.EINVALID},
		{"FlatJSON", "json", `{"a":[` + strings.Repeat("1,", 49000) + "1]}", ""},
		{"EmptyJSONObjects", "json", `{"a":[` + strings.Repeat("{},", 33000) + "{}]}", ""},
		{"DeepJSONNumbers", "json", strings.Repeat(`{"a":`, 4) + "[" + strings.Repeat("0,", 1000) + "0]" + strings.Repeat("}", 4), ""},
		{"ErrDeepJSONNumbers", "json", strings.Repeat(`{"a":`, 6) + "[" + strings.Repeat("0,", 1000) + "0]" + strings.Repeat("}", 6), domain.ETOOLARGE},
		{"DeepJSONLines", "json", strings.Repeat(`{"a":`, 7) + `"` + strings.Repeat(`a\n`, 1000) + `"` + strings.Repeat("}", 7), ""},
		{"AliasedDeepMap", "yaml", "a: &a {b: {c: {d: {e: {f: {g: x}}}}}}\nl: [*a, *a]\n", ""},
		{"ErrAliasedDeepMap", "yaml", "a: &a {b: {c: {d: {e: {f: {g: x}}}}}}\nl: [*a, *a, *a, *a, *a]\n", domain.ETOOLARGE},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := check(t, []byte(c.body), c.format)
			if got := domain.ErrorCode(err); err != nil && got != c.code || err == nil && c.code != "" {
				t.Errorf("got %v, want code %q", err, c.code)
			}
		})
	}
}

func measureAlloc(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
