package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// exited is how a keysd process that was expected to stop by itself ended.
type exited struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// runToExit runs the keysd binary with env (on a free HTTP address unless
// env gives one) and args, and waits up to a minute for it to exit. The
// KEYSD_* variables of the test's own environment are left out, so that
// env alone decides what keysd is told.
func runToExit(tb testing.TB, env map[string]string, args ...string) exited {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildKeysd(tb), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYSD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if env["KEYSD_HTTP_ADDR"] == "" {
		cmd.Env = append(cmd.Env, "KEYSD_HTTP_ADDR="+freeAddr(tb))
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if ctx.Err() != nil {
		tb.Fatalf("keysd did not exit within a minute\nstderr:\n%s", stderr.String())
	}
	var exitErr *exec.ExitError
	code := 0
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	return exited{Code: code, Stdout: stdout.String(), Stderr: stderr.String(), Took: took}
}

// logLine is one JSON line of keysd's log, with the attributes these
// tests look at.
type logLine struct {
	Level    string `json:"level"`
	Msg      string `json:"msg"`
	Err      string `json:"err"`
	Variable string `json:"variable"`
	Closest  string `json:"closest"`
}

// MustLogLines parses every line of a keysd process's stderr as JSON.
func MustLogLines(tb testing.TB, stderr string) []logLine {
	tb.Helper()
	var lines []logLine
	for _, text := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var l logLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			tb.Fatalf("stderr line is not JSON (%v): %s", err, text)
		}
		lines = append(lines, l)
	}
	return lines
}

// MustFatalLine checks that the last stderr line of a failed keysd is the
// JSON error line, its err containing each of want.
func MustFatalLine(tb testing.TB, e exited, want ...string) {
	tb.Helper()
	if e.Code == 0 {
		tb.Fatalf("keysd exited 0, want an error\nstderr:\n%s", e.Stderr)
	}
	lines := MustLogLines(tb, e.Stderr)
	last := lines[len(lines)-1]
	if last.Level != "ERROR" || last.Err == "" {
		tb.Fatalf("last stderr line: %+v, want level ERROR with err", last)
	}
	for _, w := range want {
		if !strings.Contains(last.Err, w) {
			tb.Errorf("the error lacks %q: %s", w, last.Err)
		}
	}
}

// A busy address stops keysd before it does anything else: it exits
// within seconds, says which address and which setting, and has not even
// made its data directory.
func TestBusyAddressFailsFast(t *testing.T) {
	for _, tc := range []struct{ name, variable, flag string }{
		{"HTTP", "KEYSD_HTTP_ADDR", "--http-addr"},
		{"Metrics", "KEYSD_METRICS_ADDR", "--metrics-addr"},
		{"NATSListen", "KEYSD_NATS_LISTEN", "--nats-listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			env, _ := processEnv(t, t.TempDir())
			env[tc.variable] = busy.Addr().String()

			e := runToExit(t, env)
			MustFatalLine(t, e, busy.Addr().String(), tc.variable, tc.flag, "address already in use")
			// Every other step of the start-up logs a line or writes to
			// stdout; none may have run.
			if lines := MustLogLines(t, e.Stderr); len(lines) != 1 {
				t.Errorf("%d stderr lines, want only the error:\n%s", len(lines), e.Stderr)
			}
			if e.Stdout != "" {
				t.Errorf("stdout: %s", e.Stdout)
			}
			if _, err := os.Stat(env["KEYSD_DATA_DIR"]); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("data dir after the failed start: %v, want it not made", err)
			}
			t.Logf("keysd exited after %v", e.Took)
			if e.Took > 15*time.Second {
				t.Errorf("keysd took %v to find the address busy", e.Took)
			}
		})
	}
}

// A misspelt KEYSD_* variable is warned about, naming the variable meant;
// keysctl's variables, which a shell talking to keysd often holds, are
// not. Here the misspelling causes a configuration error: the error is
// the last line, and JSON like the others.
func TestMisspeltVariableWarned(t *testing.T) {
	env, _ := processEnv(t, t.TempDir())
	delete(env, "KEYSD_BOOTSTRAP_ACCOUNT")
	env["KEYSD_BOOTSTRAP_ACOUNT"] = "admin"
	env["KEYSD_URL"] = "http://127.0.0.1:8080"
	env["KEYSD_ACCOUNT"] = "admin"

	e := runToExit(t, env)
	MustFatalLine(t, e, "KEYSD_BOOTSTRAP_ACCOUNT and KEYSD_BOOTSTRAP_KEY must be set together")
	var warned []logLine
	for _, l := range MustLogLines(t, e.Stderr) {
		if l.Variable != "" {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 {
		t.Fatalf("warnings about variables: %+v, want one", warned)
	}
	if w := warned[0]; w.Level != "WARN" || w.Variable != "KEYSD_BOOTSTRAP_ACOUNT" || w.Closest != "KEYSD_BOOTSTRAP_ACCOUNT" {
		t.Errorf("warning: %+v, want WARN about KEYSD_BOOTSTRAP_ACOUNT, closest KEYSD_BOOTSTRAP_ACCOUNT", w)
	}
}

// keysd --help prints the usage and exits 0: it was asked for, nothing
// failed.
func TestHelpExitsZero(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		t.Run(arg, func(t *testing.T) {
			e := runToExit(t, nil, arg)
			if e.Code != 0 {
				t.Errorf("exit code %d, want 0\nstderr:\n%s", e.Code, e.Stderr)
			}
			if !strings.Contains(e.Stderr, "-data-dir") {
				t.Errorf("no usage printed:\n%s", e.Stderr)
			}
		})
	}
}
