package http

import (
	"bytes"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/oklog/ulid/v2"
)

// APIVersion is the CloudAPI version keysd speaks; the triton CLI asks for
// "~9||~8".
const APIVersion = "9.20.0"

// ServerName is sent in the Server header.
const ServerName = "infrakeys"

type ctxKey int

const (
	requestIDKey ctxKey = iota
	authKey
)

// requestContext gives every request an id and the headers CloudAPI sends
// on every response (docs/api.md, "Headers"). Response-Time is computed when the
// headers are written, so it covers the handler.
func (s *Server) requestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		id := ulid.Make().String()
		c.Set("requestID", id)
		h := c.Response().Header()
		h.Set("Request-Id", id)
		h.Set("Server", ServerName)
		h.Set("Api-Version", APIVersion)
		c.Response().Before(func() {
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			h.Set("Response-Time", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
		})
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		took := time.Since(start)
		if s.cfg.Observer != nil {
			s.cfg.Observer.ObserveRequest(c.Request().Method, c.Path(), c.Response().Status, took)
		}
		s.log.Info("request",
			"requestId", id,
			"method", c.Request().Method,
			"route", c.Path(),
			"status", c.Response().Status,
			"bytes", c.Response().Size,
			"ms", took.Milliseconds(),
			"actor", actorOf(c),
		)
		return nil
	}
}

// requestID returns the id of the request in c.
func requestID(c echo.Context) string {
	id, _ := c.Get("requestID").(string)
	return id
}

// writeJSON answers with v as JSON and the body headers CloudAPI clients
// check: Content-Type, Content-Length and Content-MD5.
func writeJSON(c echo.Context, status int, v any) error {
	body, err := marshalJSON(v)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	return writeBody(c, status, "application/json", body)
}

// marshalJSON encodes v without escaping <, > and & as \u003c...: JSON
// answers are not HTML, and the escapes would make an answer that echoes
// a body six times its size.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeBody answers with body and its length and MD5.
func writeBody(c echo.Context, status int, contentType string, body []byte) error {
	sum := md5.Sum(body)
	h := c.Response().Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Content-MD5", base64.StdEncoding.EncodeToString(sum[:]))
	c.Response().WriteHeader(status)
	// For HEAD, net/http discards the body and keeps the headers.
	_, err := c.Response().Write(body)
	return err
}
