package httpsig_test

import (
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

func TestSigningString(t *testing.T) {
	t.Run("RequestTargetWithQuery", func(t *testing.T) {
		r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys?limit=5&name=a%20b")
		r.Header.Set("Date", "Tue, 07 Jun 2014 20:51:35 GMT")
		got, err := httpsig.SigningString(r, []string{"(request-target)", "date"})
		if err != nil {
			t.Fatal(err)
		}
		want := "(request-target): get /alice/keys?limit=5&name=a%20b\ndate: Tue, 07 Jun 2014 20:51:35 GMT"
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("ServerSeesRawTarget", func(t *testing.T) {
		// A server request keeps the target as sent, even where URL
		// would encode it differently.
		r := httptest.NewRequest("POST", "/alice/keys/a%3Ab?x=%7e", nil)
		got, err := httpsig.SigningString(r, []string{"(request-target)"})
		if err != nil {
			t.Fatal(err)
		}
		if want := "(request-target): post /alice/keys/a%3Ab?x=%7e"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	})

	t.Run("HostAndRepeatedHeader", func(t *testing.T) {
		r := MustRequest(t, "GET", "https://cloudapi.example:8443/")
		r.Header.Add("X-Thing", "one ")
		r.Header.Add("X-Thing", "two")
		got, err := httpsig.SigningString(r, []string{"Host", "x-thing"})
		if err != nil {
			t.Fatal(err)
		}
		if want := "host: cloudapi.example:8443\nx-thing: one, two"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if got, want := r.Header.Values("X-Thing")[0], "one "; got != want {
			t.Errorf("request header changed to %q, want %q", got, want)
		}
	})

	t.Run("ErrMissingHeader", func(t *testing.T) {
		r := MustRequest(t, "GET", "https://cloudapi.example/alice/keys")
		_, err := httpsig.SigningString(r, []string{"(request-target)", "date"})
		if !errors.Is(err, httpsig.ErrMalformed) {
			t.Errorf("err = %v, want ErrMalformed", err)
		}
	})
}
