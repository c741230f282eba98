package http

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// lmPrefix is where the Lifecycle Manager surface lives.
const lmPrefix = "/api/resource-manager/infrastructure-keys"

func isLMRequest(c echo.Context) bool {
	return strings.HasPrefix(c.Request().URL.Path, lmPrefix)
}

// lmStatuses maps domain error codes to LM statuses (docs/api.md).
var lmStatuses = map[string]int{
	domain.EINVALID:         http.StatusBadRequest,
	domain.EMISSING:         http.StatusBadRequest,
	domain.EMALFORMED:       http.StatusBadRequest,
	domain.ECONFLICT:        http.StatusConflict,
	domain.ENOTFOUND:        http.StatusNotFound,
	domain.EUNAUTHENTICATED: http.StatusUnauthorized,
	domain.EFORBIDDEN:       http.StatusForbidden,
	domain.ETOOLARGE:        http.StatusRequestEntityTooLarge,
	domain.EUNSUPPORTED:     http.StatusUnsupportedMediaType,
	domain.EUNAVAILABLE:     http.StatusServiceUnavailable,
	domain.EINTERNAL:        http.StatusInternalServerError,
}

// lmError is LM's error body; lmctl shows localizedMessage.
type lmError struct {
	LocalizedMessage string         `json:"localizedMessage"`
	Details          map[string]any `json:"details"`
	URL              string         `json:"url"`
}

// handleLMError answers err in LM's error format, in YAML or JSON as the
// client asked.
func (s *Server) handleLMError(err error, c echo.Context) {
	status, msg := http.StatusInternalServerError, "internal error"
	var he *headerError
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status, msg = http.StatusUnauthorized, he.lmMessage()
	case errors.As(err, &ee):
		status = ee.Code
		switch ee.Code {
		case http.StatusNotFound:
			msg = c.Request().URL.Path + " does not exist"
		case http.StatusMethodNotAllowed:
			msg = c.Request().Method + " is not allowed on " + c.Request().URL.Path
		default:
			status, msg = http.StatusInternalServerError, "internal error"
			s.log.Error("unexpected echo error", "requestId", requestID(c), "err", err)
		}
	default:
		code := domain.ErrorCode(err)
		if st, ok := lmStatuses[code]; ok {
			status = st
		}
		msg = domain.ErrorMessage(err)
		switch code {
		case domain.EINTERNAL:
			s.log.Error("request failed", "requestId", requestID(c), "err", err)
		case domain.EUNAVAILABLE:
			s.log.Error("request failed", "requestId", requestID(c), "err", err)
			msg = "service unavailable; retry later"
		}
	}
	body := lmError{LocalizedMessage: msg, Details: map[string]any{"requestId": requestID(c)}, URL: c.Request().URL.Path}
	if werr := lmWrite(c, status, body); werr != nil {
		s.log.Warn("write error response", "requestId", requestID(c), "err", werr)
	}
}
