package http

import (
	"net/url"

	"github.com/labstack/echo/v4"
)

// pathParam returns the path parameter name decoded exactly once. Echo
// matches routes against URL.RawPath when the request has one, that is
// when the client encoded something that needs no encoding (":" as %3A),
// and against the decoded URL.Path otherwise; either way the parameter is
// the matched text as it is. So it is still encoded only when RawPath is
// set: decoding it otherwise would decode twice, and the key named "a%41"
// (requested as a%2541) would be looked up as "aA".
func pathParam(c echo.Context, name string) string {
	v := c.Param(name)
	if c.Request().URL.RawPath == "" {
		return v
	}
	if decoded, err := url.PathUnescape(v); err == nil {
		return decoded
	}
	return v
}
