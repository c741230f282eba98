package http

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/infrakeys/infrakeys/domain"
)

// cloudAPIErrors maps domain error codes to CloudAPI statuses and codes.
// CloudAPI answers 409 for invalid input (docs/api.md, "Errors").
var cloudAPIErrors = map[string]struct {
	status int
	code   string
}{
	domain.EINVALID:         {http.StatusConflict, "InvalidArgument"},
	domain.EMISSING:         {http.StatusConflict, "MissingParameter"},
	domain.ECONFLICT:        {http.StatusConflict, "InvalidArgument"},
	domain.ENOTFOUND:        {http.StatusNotFound, "ResourceNotFound"},
	domain.EUNAUTHENTICATED: {http.StatusUnauthorized, "InvalidCredentials"},
	domain.EFORBIDDEN:       {http.StatusForbidden, "NotAuthorized"},
	domain.ETOOLARGE:        {http.StatusRequestEntityTooLarge, "RequestTooLarge"},
	domain.EUNSUPPORTED:     {http.StatusUnsupportedMediaType, "UnsupportedMediaType"},
	domain.EMALFORMED:       {http.StatusBadRequest, "BadRequest"},
	domain.EUNAVAILABLE:     {http.StatusServiceUnavailable, "ServiceUnavailable"},
	domain.EINTERNAL:        {http.StatusInternalServerError, "InternalError"},
}

// cloudAPIError is the CloudAPI error body.
type cloudAPIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// headerError is a malformed authentication header: CloudAPI answers it
// with 400 InvalidHeader, a code that exists only at this layer.
type headerError struct {
	msg string
	// quiet, if set, is msg without the part that repeats the request (a
	// header name the signature lists, which CloudAPI's http-signature
	// library names). LM answers it: LM's messages never echo input.
	quiet string
}

func (e *headerError) Error() string { return e.msg }

// lmMessage is the message LM answers.
func (e *headerError) lmMessage() string {
	if e.quiet != "" {
		return e.quiet
	}
	return e.msg
}

// handleError answers err in the CloudAPI error format. Internal errors
// are logged with the request id; the client sees a generic message.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	if isLMRequest(c) {
		s.handleLMError(err, c)
		return
	}
	status, body := s.cloudAPIErrorBody(err, c)
	if werr := writeJSON(c, status, body); werr != nil {
		s.log.Warn("write error response", "requestId", requestID(c), "err", werr)
	}
}

func (s *Server) cloudAPIErrorBody(err error, c echo.Context) (int, cloudAPIError) {
	var he *headerError
	if errors.As(err, &he) {
		return http.StatusBadRequest, cloudAPIError{"InvalidHeader", he.msg}
	}
	var ee *echo.HTTPError
	if errors.As(err, &ee) {
		switch ee.Code {
		case http.StatusNotFound:
			return http.StatusNotFound, cloudAPIError{"ResourceNotFound", c.Request().URL.Path + " does not exist"}
		case http.StatusMethodNotAllowed:
			return http.StatusMethodNotAllowed, cloudAPIError{"MethodNotAllowed", c.Request().Method + " is not allowed on " + c.Request().URL.Path}
		case http.StatusRequestEntityTooLarge:
			return ee.Code, cloudAPIError{"RequestTooLarge", "request body too large"}
		}
		s.log.Error("unexpected echo error", "requestId", requestID(c), "err", err)
		return http.StatusInternalServerError, cloudAPIError{"InternalError", "internal error"}
	}
	code := domain.ErrorCode(err)
	m, ok := cloudAPIErrors[code]
	if !ok {
		m = cloudAPIErrors[domain.EINTERNAL]
	}
	if code == domain.EINTERNAL || code == domain.EUNAVAILABLE {
		s.log.Error("request failed", "requestId", requestID(c), "err", err)
	}
	msg := domain.ErrorMessage(err)
	if code == domain.EUNAVAILABLE {
		msg = "service unavailable; retry later"
	}
	return m.status, cloudAPIError{Code: m.code, Message: msg}
}
