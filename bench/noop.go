package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/labstack/echo/v4"
)

// noopCommand runs this program as the no-op server of the read
// comparison: Echo, one handler that does nothing, in its own process as
// keysd is.
const (
	noopCommand = "noop-server"
	noopPath    = "/noop"
)

func serveNoop(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(noopCommand, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.GET(noopPath, func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "noop listening on %s\n", l.Addr())
	srv := &http.Server{Handler: e}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
