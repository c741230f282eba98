package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"KEYSD_URL", "KEYSD_URL", 0},
		{"kitten", "sitting", 3},
		{"KEYSD_HTTP_ADR", "KEYSD_HTTP_ADDR", 1},
		{"KEYSD_LOG_LEVLE", "KEYSD_LOG_LEVEL", 2},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestUnknownVariables(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []unknownVariable
	}{
		{name: "None", environ: nil},
		{
			name:    "KnownToKeysd",
			environ: []string{"KEYSD_DATA_DIR=/d", "KEYSD_HTTP_ADDR=:1", "KEYSD_MASTER_KEY=x", "KEYSD_CLOCK_SKEW=1m"},
		},
		{
			name:    "KnownToOtherTools",
			environ: []string{"KEYSD_URL=http://h", "KEYSD_ACCOUNT=a", "KEYSD_KEY_FILE=/k", "KEYSD_NATS_NKEY=/n", "KEYSD_TRITON=/t"},
		},
		{name: "NotKeysd", environ: []string{"PATH=/bin", "HOME=/root", "KEYSDX=1", "MY_KEYSD_DATA=1"}},
		{
			name: "Misspelt",
			environ: []string{
				"KEYSD_LOG_LEVL=debug",
				"KEYSD_HTTP_ADR=:1",
				"KEYSD_DATADIR=/d",
				"KEYSD_MASTERKEY_FILE=/m",
				"KEYSD_NATS_URI=nats://h",
				"KEYSD_BOOTSTRAP_ACOUNT=admin",
				"KEYSD_ACOUNT=admin",
				"KEYSD_ALLOW_LEGACY_SIGNATURE=true",
				"KEYSD_PREVIOUS_MASTER_KEYS=/o",
				"keysd_data_dir=/d",
			},
			want: []unknownVariable{
				{"KEYSD_LOG_LEVL", "KEYSD_LOG_LEVEL"},
				{"KEYSD_HTTP_ADR", "KEYSD_HTTP_ADDR"},
				{"KEYSD_DATADIR", "KEYSD_DATA_DIR"},
				{"KEYSD_MASTERKEY_FILE", "KEYSD_MASTER_KEY_FILE"},
				{"KEYSD_NATS_URI", "KEYSD_NATS_URL"},
				{"KEYSD_BOOTSTRAP_ACOUNT", "KEYSD_BOOTSTRAP_ACCOUNT"},
				{"KEYSD_ACOUNT", "KEYSD_ACCOUNT"},
				{"KEYSD_ALLOW_LEGACY_SIGNATURE", "KEYSD_ALLOW_LEGACY_SIGNATURES"},
				{"KEYSD_PREVIOUS_MASTER_KEYS", "KEYSD_PREVIOUS_MASTER_KEY_FILES"},
			},
		},
		{name: "EmptyValue", environ: []string{"KEYSD_REPLICA="}, want: []unknownVariable{{"KEYSD_REPLICA", "KEYSD_REPLICAS"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unknownVariables(tc.environ); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("unknownVariables =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

// Every KEYSD_* name keysctl reads is one keysd knows, its own or in
// otherVariables: else keysd would warn about a variable a user's shell
// rightly holds for keysctl.
func TestOtherVariablesCoverKeysctl(t *testing.T) {
	name := regexp.MustCompile(`^KEYSD_[A-Z0-9_]+$`)
	files, err := filepath.Glob("../keysctl/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no keysctl source found: %v", err)
	}
	var keysctl []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && name.MatchString(s) {
					keysctl = append(keysctl, s)
				}
			}
			return true
		})
	}
	if len(keysctl) == 0 {
		t.Log("keysctl reads no KEYSD_* variable")
	}
	for _, v := range keysctl {
		if u := unknownVariables([]string{v + "=x"}); len(u) != 0 {
			t.Errorf("keysctl reads %s, which keysd would warn about: add it to otherVariables", v)
		}
	}
	for _, v := range otherVariables {
		if slices.ContainsFunc(envVars(new(Config)), func(e envVar) bool { return e.name == v }) {
			t.Errorf("%s is in otherVariables, yet keysd reads it", v)
		}
	}
}
