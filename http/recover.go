package http

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/labstack/echo/v4"
)

// recoverPanic turns a panic in a handler or a later middleware into an
// internal error, which the surface's error handler answers as a 500 in its
// own format and logs with the request id. Without it net/http would drop
// the connection and the client would learn nothing. http.ErrAbortHandler
// is net/http's way to abort a response on purpose, so it goes on up.
func (s *Server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r)
			}
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}()
		return next(c)
	}
}
