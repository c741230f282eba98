package domain

import (
	"errors"
	"fmt"
)

// Error codes. Each API surface maps them to its own status and body in one
// table (http/cloudapi_errors.go, http/lm_errors.go).
const (
	EINVALID         = "invalid"         // the input is wrong
	EMISSING         = "missing"         // a required input is absent
	ECONFLICT        = "conflict"        // the input clashes with existing state
	ENOTFOUND        = "not_found"       // the thing does not exist (or is not visible)
	EUNAUTHENTICATED = "unauthenticated" // no or bad credentials
	EFORBIDDEN       = "forbidden"       // authenticated, but not allowed
	ETOOLARGE        = "too_large"       // the request is too large
	EUNSUPPORTED     = "unsupported"     // e.g. an unknown content type
	EMALFORMED       = "malformed"       // the request cannot be read (bad JSON, ...)
	EUNAVAILABLE     = "unavailable"     // a dependency is down; retry later
	EINTERNAL        = "internal"        // a bug or an unexpected failure
)

// Error is the one application error type. Its Message is safe to show to
// clients: it never contains key material or internal details.
type Error struct {
	Code    string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrOutcomeUnknown marks an error after which a command's events may be in
// the log after all: the append's answer was lost, or the append succeeded
// and what followed failed. Whoever prepared a side effect for the command
// (a sealed private half) must keep it: undoing it could break a key the
// log records as live. It wraps an *Error that says what to tell clients.
var ErrOutcomeUnknown = errors.New("the outcome is unknown: the events may have been recorded")

// OutcomeUnknown marks err as ErrOutcomeUnknown, keeping its code and
// message.
func OutcomeUnknown(err error) error {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// EINTERNAL otherwise. A nil error has no code.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: its own message if it
// is an *Error, a generic one otherwise, so internal details never leak.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
