package main

import (
	"fmt"
	"io"
)

// keysctl's environment variables are its own (KEYSCTL_*): it once read
// KEYSD_NATS_URL, and a shell that exported it for keysctl started the
// next keysd as a replica of an external NATS deployment.
//
// formerNames maps each variable to the name it had before, still read
// (with a warning) where keysd does not read that name itself.
// KEYSD_NATS_URL and KEYSD_NATS_CREDS are not read at all: they are keysd's.
var formerNames = map[string]string{
	"KEYSCTL_URL":       "KEYSD_URL",
	"KEYSCTL_ACCOUNT":   "KEYSD_ACCOUNT",
	"KEYSCTL_KEY_FILE":  "KEYSD_KEY_FILE",
	"KEYSCTL_NATS_NKEY": "KEYSD_NATS_NKEY",
}

// environ reads keysctl's environment variables.
type environ struct {
	getenv func(string) string
	stderr io.Writer
	warned map[string]bool
}

func newEnviron(getenv func(string) string, stderr io.Writer) *environ {
	return &environ{getenv: getenv, stderr: stderr, warned: map[string]bool{}}
}

// get returns the value of variable name, or of its former name, saying
// once that the former name is deprecated.
func (e *environ) get(name string) string {
	if v := e.getenv(name); v != "" {
		return v
	}
	old, ok := formerNames[name]
	if !ok {
		return ""
	}
	v := e.getenv(old)
	if v != "" && !e.warned[old] {
		e.warned[old] = true
		fmt.Fprintf(e.stderr, "keysctl: %s is deprecated, set %s instead\n", old, name)
	}
	return v
}

// or returns the value of variable name, or def when it is not set.
func (e *environ) or(name, def string) string {
	if v := e.get(name); v != "" {
		return v
	}
	return def
}
