package http

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// RevocationList gives keysd's OpenSSH revocation list as of the log's
// last event when asked.
type RevocationList interface {
	// CurrentKRL returns the list in OpenSSH's binary format and its
	// version, having applied every event acknowledged before the call;
	// an EUNAVAILABLE error when it cannot.
	CurrentKRL(ctx context.Context) (data []byte, version uint64, err error)
}

// krlWait bounds how long GET /--krl waits for the list to apply the
// log's last events.
const krlWait = 10 * time.Second

// handleKRL serves GET /--krl, unauthenticated like a CA's public keys:
// the revocation list for sshd's RevokedKeys (and clients'
// RevokedHostKeys). Its ETag is the list's version, the same on every
// replica at the same point of the log, so a client that has it gets a
// 304. The list includes every revocation or deletion acknowledged before
// the request, on any replica.
func (s *Server) handleKRL(c echo.Context) error {
	if s.cfg.Revocations == nil {
		return domain.Errorf(domain.ENOTFOUND, "this keysd serves no revocation list")
	}
	// Bounded: a list that cannot catch up with the log in time is a
	// 503, never a list that misses an acknowledged revocation.
	ctx, cancel := context.WithTimeout(c.Request().Context(), krlWait)
	defer cancel()
	data, version, err := s.cfg.Revocations.CurrentKRL(ctx)
	if err != nil {
		return err
	}
	etag := `"` + strconv.FormatUint(version, 10) + `"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	// A cache may keep the list but must ask again each time: a
	// revocation has to reach sshd at the next fetch.
	h.Set("Cache-Control", "no-cache")
	if etagMatches(c.Request().Header.Values("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return writeBody(c, http.StatusOK, "application/octet-stream", data)
}

// etagMatches reports whether an If-None-Match header (RFC 9110: a list
// of tags, weak ones compared weakly, or "*") names etag.
func etagMatches(values []string, etag string) bool {
	for _, v := range values {
		for _, tag := range strings.Split(v, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
				return true
			}
		}
	}
	return false
}
