package domain

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestCatalogueComplete checks that every payload type with an EventType
// method in this package is in the catalogue, so that declaring an event
// type is enough for SchemaVersions (and Decode) to know it.
func TestCatalogueComplete(t *testing.T) {
	pkgs, err := parser.ParseDir(token.NewFileSet(), ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, f := range pkgs["domain"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "EventType" || fn.Recv == nil {
				continue
			}
			if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
				declared = append(declared, id.Name)
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("found no EventType methods")
	}
	var listed []string
	for _, p := range catalogue {
		listed = append(listed, reflect.TypeOf(p).Name())
	}
	slices.Sort(declared)
	slices.Sort(listed)
	if got, want := strings.Join(listed, " "), strings.Join(declared, " "); got != want {
		t.Errorf("catalogue lists %s; payload types declared: %s", got, want)
	}
}
