package http

import "github.com/labstack/echo/v4"

// Echo returns the server's router, so a test can add a route production
// has no use for (one that panics).
func (s *Server) Echo() *echo.Echo { return s.echo }
