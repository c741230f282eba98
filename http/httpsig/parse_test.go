package httpsig_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		name, value            string
		keyID, algorithm, hdrs string
	}{
		{
			"OK",
			`Signature keyId="/alice/keys/aa:bb",algorithm="ed25519-sha512",headers="(request-target) date",signature="AQID"`,
			"/alice/keys/aa:bb", "ed25519-sha512", "(request-target) date",
		},
		{
			"SpacesAndOtherOrder",
			`Signature signature="AQID", headers="(request-target) date",  algorithm="rsa-sha256" ,keyId="/alice/keys/aa:bb"`,
			"/alice/keys/aa:bb", "rsa-sha256", "(request-target) date",
		},
		{
			"DefaultHeaders",
			`Signature keyId="/alice/keys/aa:bb",algorithm="rsa-sha1",signature="AQID"`,
			"/alice/keys/aa:bb", "rsa-sha1", "date",
		},
		{
			"Lowercased",
			`signature keyId="/alice/keys/aa:bb",algorithm="RSA-SHA256",headers="(Request-Target)  Date X-Date",signature="AQID"`,
			"/alice/keys/aa:bb", "rsa-sha256", "(request-target) date x-date",
		},
		{
			"UnknownParameterIgnored",
			`Signature keyId="/alice/keys/aa:bb",algorithm="ed25519-sha512",created="1402170695",signature="AQID"`,
			"/alice/keys/aa:bb", "ed25519-sha512", "date",
		},
		{
			"EscapedQuote",
			`Signature keyId="/alice/keys/a\"b",algorithm="ed25519-sha512",signature="AQID"`,
			`/alice/keys/a"b`, "ed25519-sha512", "date",
		},
		{
			"CommaInsideQuotes",
			`Signature keyId="/alice/keys/a,b=c",signature="AQID"`,
			"/alice/keys/a,b=c", "", "date",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := httpsig.ParseAuthorization(tt.value)
			if err != nil {
				t.Fatalf("ParseAuthorization: %v", err)
			}
			if got, want := p.KeyID, tt.keyID; got != want {
				t.Errorf("KeyID = %q, want %q", got, want)
			}
			if got, want := p.Algorithm, tt.algorithm; got != want {
				t.Errorf("Algorithm = %q, want %q", got, want)
			}
			if got, want := strings.Join(p.Headers, " "), tt.hdrs; got != want {
				t.Errorf("Headers = %q, want %q", got, want)
			}
			if got, want := string(p.Signature), "\x01\x02\x03"; got != want {
				t.Errorf("Signature = %q, want %q", got, want)
			}
		})
	}
}

func TestParseAuthorizationMalformed(t *testing.T) {
	tests := []struct{ name, value string }{
		{"Empty", ``},
		{"MissingKeyID", `Signature algorithm="rsa-sha256",signature="AQID"`},
		{"EmptyKeyID", `Signature keyId="",algorithm="rsa-sha256",signature="AQID"`},
		{"MissingSignature", `Signature keyId="/a/keys/b",algorithm="rsa-sha256"`},
		{"EmptySignature", `Signature keyId="/a/keys/b",signature=""`},
		{"BadBase64", `Signature keyId="/a/keys/b",signature="not base64!"`},
		{"WrongScheme", `Basic YWxpY2U6c2VjcmV0`},
		{"SchemeOnly", `Signature`},
		{"UnterminatedQuote", `Signature keyId="/a/keys/b,signature="AQID`},
		{"UnterminatedEscape", `Signature keyId="/a/keys/b",signature="AQID\`},
		{"Unquoted", `Signature keyId=/a/keys/b,signature="AQID"`},
		{"MissingComma", `Signature keyId="/a/keys/b" signature="AQID"`},
		{"TrailingComma", `Signature keyId="/a/keys/b",signature="AQID",`},
		{"EmptyHeaders", `Signature keyId="/a/keys/b",headers=" ",signature="AQID"`},
		{"Repeated", `Signature keyId="/a/keys/b",keyId="/c/keys/d",signature="AQID"`},
		{"Garbage", `Signature !!!@@@###`},
		{"NoName", `Signature ="x",keyId="/a/keys/b",signature="AQID"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := httpsig.ParseAuthorization(tt.value)
			if !errors.Is(err, httpsig.ErrMalformed) {
				t.Errorf("ParseAuthorization(%q) = %+v, %v; want ErrMalformed", tt.value, p, err)
			}
		})
	}
}
