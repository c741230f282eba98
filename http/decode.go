package http

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/infrakeys/infrakeys/domain"
)

// Every request body on every surface is decoded here, strictly, into a
// tree of map[string]any, []any, string, json.Number, bool and nil. What
// a lenient decoder would rewrite or pick silently is refused instead:
// the caller would otherwise store something other than what it sent.
//
// encoding/json/jsontext (which refuses duplicate names and invalid UTF-8
// by itself) exists in Go 1.26 only under GOEXPERIMENT=jsonv2, so JSON is
// tokenized with encoding/json and the checks it lacks are made here.

// bodyFormat is an encoding of a request body.
type bodyFormat int

const (
	formatJSON bodyFormat = iota
	formatYAML
	formatForm
)

const (
	// decodeMultiple bounds what a body may become once decoded: its
	// decoded value, measured as what it takes written back as compact
	// JSON or as YAML (see spend), is at most this many times the body's
	// own size. Plain JSON and YAML bodies stay well within it unless they
	// nest many tiny values deep; beyond it a body grows only through
	// YAML aliases.
	decodeMultiple = 8
	// maxDecodeDepth bounds nesting: deeper bodies are refused before
	// they cost stack, or indentation in a YAML answer that echoes them.
	maxDecodeDepth = 10
)

// decodeBody decodes body, in format, into an object. An empty body (or
// a YAML body holding only comments) is an empty object.
func decodeBody(body []byte, format bodyFormat) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	d := &decoder{budget: decodeMultiple * len(body), badText: -1}
	var v any
	var err error
	switch format {
	case formatJSON:
		v, err = d.json(body)
	case formatYAML:
		v, err = d.yaml(body)
	case formatForm:
		v, err = d.form(body)
	}
	if err != nil {
		return nil, err
	}
	if v == nil && format == formatYAML {
		return map[string]any{}, nil
	}
	obj, ok := v.(map[string]any)
	if !ok && format == formatYAML {
		return nil, domain.Errorf(domain.EMALFORMED, "request body is not a YAML mapping")
	} else if !ok {
		return nil, malformedJSON()
	}
	return obj, nil
}

// decoder holds what is left of a body's decoded-size budget.
type decoder struct {
	budget int
	// badText is the offset of a JSON body's first invalid text, or -1.
	badText int
}

// spend charges n bytes of decoded size. Every value is charged, as it
// is built, at least what it takes in an answer that echoes it, as compact
// JSON or as YAML, so an expanding body is refused before the expansion
// is allocated.
func (d *decoder) spend(n int) error {
	d.budget -= n
	if d.budget < 0 {
		return domain.Errorf(domain.ETOOLARGE, "request body is too large once decoded: at most %d times its own size, counting each use of a YAML alias and the indentation a YAML answer gives nested values", decodeMultiple)
	}
	return nil
}

// indent is what a YAML answer (two spaces a level) puts before a member
// or item of a container at depth.
func indent(depth int) int { return 2 * depth }

// member charges a member name of a mapping at depth, with its separators
// and indentation.
func (d *decoder) member(name string, depth int) error {
	return d.spend(strLen(name, depth) + 2 + indent(depth))
}

// item charges an array item at depth: its indentation, and the "- " and
// line end of YAML (more than JSON's comma).
func (d *decoder) item(depth int) error { return d.spend(3 + indent(depth)) }

// strLen is the most s, a value at depth, can take in an answer: as a
// JSON string, quotes and escapes included, or as a YAML block whose
// every line is indented.
func strLen(s string, depth int) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == '\n':
			n += 6 + indent(depth)
		case b < 0x20:
			n += 6 // \u00XX
		case b == '"' || b == '\\' || b == '\'':
			n += 2 // escaped in JSON, or doubled in single-quoted YAML
		case b == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9):
			n += 6 // U+2028 and U+2029 are always escaped
			i += 2
		default:
			n++
		}
	}
	return n
}

// path names a member for error messages: "properties.sshKey". Names
// are quoted when they are not plain words, and long ones are cut, so a
// hostile name cannot fill the message.
func path(parent, name string) string {
	plain := name != "" && len(name) <= maxEcho
	for _, r := range name {
		if !(r == '_' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			plain = false
			break
		}
	}
	if !plain {
		name = strconv.Quote(truncate(name))
	}
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// where names the place of an error: the member's path, or the body.
func where(at string) string {
	if at == "" {
		return "request body"
	}
	return at
}

func (d *decoder) json(body []byte) (any, error) {
	// encoding/json would store bytes that are not UTF-8, and \u escapes
	// of half a surrogate pair, as U+FFFD. Both can only stand inside
	// strings (anywhere else they are a syntax error): find the first
	// here, and refuse the string that holds it as the walk reaches it.
	d.badText = invalidUTF8(body)
	if s := loneSurrogate(body); s >= 0 && (d.badText < 0 || s < d.badText) {
		d.badText = s
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, malformedJSON()
	}
	v, err := d.jsonValue(dec, tok, "", 1)
	if err != nil {
		return nil, err
	}
	if d.badText >= 0 {
		return nil, notUTF8("request body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, domain.Errorf(domain.EMALFORMED, "request body holds more than one JSON value")
	}
	return v, nil
}

// textError refuses the string token dec has just read if it holds the
// body's first invalid text.
func (d *decoder) textError(dec *json.Decoder, what string) error {
	if d.badText >= 0 && dec.InputOffset() > int64(d.badText) {
		return notUTF8(what)
	}
	return nil
}

func notUTF8(what string) error {
	return domain.Errorf(domain.EINVALID, "%s is not valid UTF-8: it holds a byte that is not UTF-8, or a \\u escape of half a surrogate pair", what)
}

// invalidUTF8 returns the offset of the first byte of b that is not
// UTF-8, or -1.
func invalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}

func malformedJSON() error {
	return domain.Errorf(domain.EMALFORMED, "request body is not a JSON object")
}

func (d *decoder) jsonValue(dec *json.Decoder, tok json.Token, at string, depth int) (any, error) {
	if depth > maxDecodeDepth {
		return nil, domain.Errorf(domain.EINVALID, "%s is nested more than %d levels deep", where(at), maxDecodeDepth)
	}
	switch t := tok.(type) {
	case json.Delim:
		if err := d.spend(2); err != nil {
			return nil, err
		}
		if t == '[' {
			arr := []any{}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return nil, malformedJSON()
				}
				if err := d.item(depth); err != nil {
					return nil, err
				}
				v, err := d.jsonValue(dec, tok, at+"["+strconv.Itoa(len(arr))+"]", depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			if err != nil {
				return nil, malformedJSON()
			}
			return arr, nil
		}
		obj := map[string]any{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, malformedJSON()
			}
			name, _ := tok.(string)
			if err := d.textError(dec, "a member name in "+where(at)); err != nil {
				return nil, err
			}
			member := path(at, name)
			if _, dup := obj[name]; dup {
				return nil, domain.Errorf(domain.EINVALID, "%s is given more than once", member)
			}
			if err := d.member(name, depth); err != nil {
				return nil, err
			}
			tok, err = dec.Token()
			if err != nil {
				return nil, malformedJSON()
			}
			if obj[name], err = d.jsonValue(dec, tok, member, depth+1); err != nil {
				return nil, err
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, malformedJSON()
		}
		return obj, nil
	case string:
		if err := d.textError(dec, where(at)); err != nil {
			return nil, err
		}
		return t, d.spend(strLen(t, depth))
	case json.Number:
		return t, d.spend(len(t))
	case bool:
		return t, d.spend(5)
	case nil:
		return nil, d.spend(4)
	}
	return nil, malformedJSON()
}

// loneSurrogate returns the offset of a \u escape in body that is half a
// surrogate pair without its other half, or -1. Backslashes occur only in
// strings in JSON, so the scan needs no tokenizer.
func loneSurrogate(body []byte) int {
	hex := func(i int) (rune, bool) {
		if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(body[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(body)-1; i++ {
		if body[i] != '\\' {
			continue
		}
		r, ok := hex(i)
		if !ok {
			i++ // an escape such as \\ or \": skip the escaped byte
			continue
		}
		switch {
		case 0xD800 <= r && r < 0xDC00:
			if low, ok := hex(i + 6); !ok || low < 0xDC00 || low > 0xDFFF {
				return i
			}
			i += 11
		case 0xDC00 <= r && r <= 0xDFFF:
			return i
		default:
			i += 5
		}
	}
	return -1
}

func (d *decoder) yaml(body []byte) (any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(body))
	var doc yaml.Node
	if err := dec.Decode(&doc); err == io.EOF {
		return nil, nil
	} else if err != nil {
		// The YAML parser refuses bytes that are not UTF-8; say so, not
		// that the body is no mapping.
		if bad := invalidUTF8(body); bad >= 0 {
			return nil, notUTF8("request body, line " + strconv.Itoa(1+bytes.Count(body[:bad], []byte("\n"))) + ",")
		}
		return nil, domain.Errorf(domain.EMALFORMED, "request body is not a YAML mapping")
	}
	var more yaml.Node
	if err := dec.Decode(&more); err != io.EOF {
		return nil, domain.Errorf(domain.EMALFORMED, "request body holds more than one YAML document")
	}
	if len(doc.Content) != 1 {
		return nil, nil
	}
	return d.yamlValue(doc.Content[0], "", 1)
}

// coreTags are the YAML 1.2 core schema's, the only ones a body may name:
// every other tag (!!binary, !!timestamp, !!python/..., !custom) asks for
// a type JSON and the event log cannot hold. !!merge (the YAML 1.1 `<<`
// key) is refused too: which of the merged keys wins is what this decoder
// refuses to guess.
var coreTags = map[string]bool{"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true, "!!seq": true, "!!map": true}

func (d *decoder) yamlValue(n *yaml.Node, at string, depth int) (any, error) {
	if depth > maxDecodeDepth {
		return nil, domain.Errorf(domain.EINVALID, "%s is nested more than %d levels deep", where(at), maxDecodeDepth)
	}
	if n.Kind == yaml.AliasNode {
		// Expanded on every use, and charged on every use.
		return d.yamlValue(n.Alias, at, depth)
	}
	if n.Style&yaml.TaggedStyle != 0 && !coreTags[n.ShortTag()] {
		return nil, domain.Errorf(domain.EINVALID, "%s has the YAML tag %s; only the core schema's tags are accepted (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map)", where(at), strconv.Quote(truncate(n.Tag)))
	}
	switch n.Kind {
	case yaml.MappingNode:
		if err := d.spend(2); err != nil {
			return nil, err
		}
		obj := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			name, err := d.yamlKey(n.Content[i], at)
			if err != nil {
				return nil, err
			}
			member := path(at, name)
			if _, dup := obj[name]; dup {
				return nil, domain.Errorf(domain.EINVALID, "%s is given more than once", member)
			}
			if err := d.member(name, depth); err != nil {
				return nil, err
			}
			if obj[name], err = d.yamlValue(n.Content[i+1], member, depth+1); err != nil {
				return nil, err
			}
		}
		return obj, nil
	case yaml.SequenceNode:
		if err := d.spend(2); err != nil {
			return nil, err
		}
		arr := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			if err := d.item(depth); err != nil {
				return nil, err
			}
			v, err := d.yamlValue(e, at+"["+strconv.Itoa(i)+"]", depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case yaml.ScalarNode:
		return d.yamlScalar(n, at, depth)
	}
	return nil, domain.Errorf(domain.EMALFORMED, "request body is not a YAML mapping")
}

// yamlKey returns a mapping key, which must be a string: JSON (and so the
// event log) has no other kind, and writing 1 or true as "1" or "true"
// would be a rewrite.
func (d *decoder) yamlKey(n *yaml.Node, at string) (string, error) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge" {
		return "", domain.Errorf(domain.EINVALID, "%s uses a YAML merge key (<<), which is not accepted: write the members out", where(at))
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!timestamp") || n.Style&yaml.TaggedStyle != 0 && n.ShortTag() != "!!str" {
		return "", domain.Errorf(domain.EINVALID, "%s has a key that is not a string (quote it)", where(at))
	}
	if !utf8.ValidString(n.Value) {
		return "", domain.Errorf(domain.EINVALID, "%s has a key that is not valid UTF-8", where(at))
	}
	return n.Value, nil
}

// yamlScalar converts a scalar by its tag. A plain scalar that looks like
// a date is a string, as in the YAML 1.2 core schema (yaml.v3 would make
// it a time).
func (d *decoder) yamlScalar(n *yaml.Node, at string, depth int) (any, error) {
	invalid := func(what string) error {
		return domain.Errorf(domain.EINVALID, "%s is not a valid %s", where(at), what)
	}
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		if !utf8.ValidString(n.Value) {
			return nil, domain.Errorf(domain.EINVALID, "%s is not valid UTF-8", where(at))
		}
		return n.Value, d.spend(strLen(n.Value, depth))
	case "!!null":
		return nil, d.spend(4)
	case "!!bool":
		switch n.Value {
		case "true", "True", "TRUE":
			return true, d.spend(5)
		case "false", "False", "FALSE":
			return false, d.spend(5)
		}
		return nil, invalid("boolean")
	case "!!int":
		var text string
		if i, err := strconv.ParseInt(n.Value, 0, 64); err == nil {
			text = strconv.FormatInt(i, 10)
		} else if u, err := strconv.ParseUint(n.Value, 0, 64); err == nil {
			text = strconv.FormatUint(u, 10)
		} else {
			return nil, invalid("integer")
		}
		return json.Number(text), d.spend(len(text))
	case "!!float":
		f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			// JSON has no infinities or NaN: .inf could not be answered.
			return nil, invalid("finite number")
		}
		text := strconv.FormatFloat(f, 'g', -1, 64)
		return json.Number(text), d.spend(len(text))
	}
	return nil, domain.Errorf(domain.EINVALID, "%s has the YAML tag %s; only the core schema's tags are accepted (!!str, !!int, !!float, !!bool, !!null, !!seq, !!map)", where(at), strconv.Quote(truncate(n.Tag)))
}

// maxEcho is the most of a member name or tag an error message repeats.
const maxEcho = 40

// truncate cuts s to maxEcho bytes for an error message.
func truncate(s string) string {
	if len(s) > maxEcho {
		return strings.ToValidUTF8(s[:maxEcho], "") + "..."
	}
	return s
}

// form decodes application/x-www-form-urlencoded, which CloudAPI accepts
// as restify does: every value a string. A name given twice is refused as
// in JSON.
func (d *decoder) form(body []byte) (any, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, domain.Errorf(domain.EMALFORMED, "request body is not a valid form")
	}
	obj := make(map[string]any, len(form))
	for name, vs := range form {
		member := path("", name)
		if len(vs) > 1 {
			return nil, domain.Errorf(domain.EINVALID, "%s is given more than once", member)
		}
		if !utf8.ValidString(name) || !utf8.ValidString(vs[0]) {
			return nil, domain.Errorf(domain.EINVALID, "%s is not valid UTF-8", member)
		}
		if err := d.spend(strLen(name, 1) + strLen(vs[0], 1) + 2 + indent(1)); err != nil {
			return nil, err
		}
		obj[name] = vs[0]
	}
	return obj, nil
}
