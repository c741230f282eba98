package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDocument checks that keysd serves http/openapi.yaml as it is
// in the repository, and that it is a valid OpenAPI 3 document.
func TestOpenAPIDocument(t *testing.T) {
	k := MustStart(t, nil)
	want, err := os.ReadFile("../../http/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	get := send(t, newRequest(t, http.MethodGet, k.URL+"/openapi.yaml", nil))
	if got, want := get.StatusCode, http.StatusOK; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if !bytes.Equal(get.Body, want) {
		t.Errorf("served document differs from http/openapi.yaml (%d bytes vs %d)", len(get.Body), len(want))
	}
	if got, want := get.Header.Get("Content-Type"), "application/yaml"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	doc, err := openapi3.NewLoader().LoadFromData(get.Body)
	if err != nil {
		t.Fatalf("served document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Errorf("served document is not valid OpenAPI 3: %v", err)
	}
	if got := doc.OpenAPI; len(got) < 2 || got[:2] != "3." {
		t.Errorf("openapi = %q, want 3.x", got)
	}

	t.Run("Head", func(t *testing.T) {
		head := send(t, newRequest(t, http.MethodHead, k.URL+"/openapi.yaml", nil))
		if head.StatusCode != http.StatusOK || len(head.Body) != 0 || head.Header.Get("Content-MD5") != get.Header.Get("Content-MD5") {
			t.Errorf("HEAD: %d, body %d bytes, Content-MD5 %q, want 200, none, %q", head.StatusCode, len(head.Body), head.Header.Get("Content-MD5"), get.Header.Get("Content-MD5"))
		}
	})
}
