package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/internal/testkit"
)

// readmeFirstRun returns the shell block of the README's "First run"
// section in three parts: the steps before the one that starts keysd, that
// step, and the steps after it (which the README runs in another shell).
func readmeFirstRun(t *testing.T, readme string) (before, daemon, after string) {
	t.Helper()
	lines := strings.Split(readme, "\n")
	start := -1
	for i, line := range lines {
		if strings.HasPrefix(line, "## First run") {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatal(`README.md has no "## First run" section`)
	}
	var block []string
	in := false
	for _, line := range lines[start+1:] {
		if strings.HasPrefix(line, "## ") && !in {
			break
		}
		if strings.HasPrefix(line, "```") {
			if in {
				break
			}
			in = true
			continue
		}
		if in {
			block = append(block, line)
		}
	}
	if len(block) == 0 {
		t.Fatal(`README.md's "First run" section has no fenced shell block`)
	}
	// Steps begin with a comment "# 1. ...".
	stepRE := regexp.MustCompile(`^# \d+\. `)
	var steps []string
	for _, line := range block {
		if stepRE.MatchString(line) || len(steps) == 0 {
			steps = append(steps, "")
		}
		steps[len(steps)-1] += line + "\n"
	}
	for i, step := range steps {
		if strings.Contains(step, "./cmd/keysd") {
			return strings.Join(steps[:i], ""), step, strings.Join(steps[i+1:], "")
		}
	}
	t.Fatalf("no step of README.md's First run starts keysd (./cmd/keysd):\n%s", strings.Join(block, "\n"))
	return "", "", ""
}

// TestReadmeFirstRun runs the README's walk-through as a new user on a
// fresh machine would: HOME an empty directory, no ssh-agent, no terminal,
// the commands as written (go run included), in the checkout. A passphrase
// prompt fails the test: ssh-keygen asks SSH_ASKPASS, which records the
// prompt. The one change is keysd's address: a free port instead of
// 127.0.0.1:8080, which another keysd may hold.
func TestReadmeFirstRun(t *testing.T) {
	triton := findTool(t, "triton", "KEYSD_TRITON", "../../.ci/node_modules/.bin/triton")
	keygen := findTool(t, "ssh-keygen", "KEYSD_SSH_KEYGEN")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	before, daemon, after := readmeFirstRun(t, strings.ReplaceAll(string(readme), "127.0.0.1:8080", addr))

	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	prompts := filepath.Join(dir, "prompts")
	askpass := filepath.Join(dir, "askpass")
	script := "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '" + prompts + "'\nexit 1\n"
	if err := os.WriteFile(askpass, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// A clean environment: nothing from the developer's own ssh-agent,
	// triton profile or keysd settings. Go keeps its caches, which lie
	// under HOME by default: the first go run of a fresh machine (a minute
	// or two) is not what this test is about.
	env := []string{
		"HOME=" + home,
		"PATH=" + filepath.Dir(triton) + string(os.PathListSeparator) + filepath.Dir(keygen) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"SSH_ASKPASS=" + askpass,
		"SSH_ASKPASS_REQUIRE=force",
		"KEYSD_DATA_DIR=" + filepath.Join(dir, "data"), // not ./data in the checkout
		"KEYSD_HTTP_ADDR=" + addr,
		"KEYSD_URL=http://" + addr,
	}
	goEnv, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOENV", "GOFLAGS").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	for i, v := range strings.Split(strings.TrimSpace(string(goEnv)), "\n") {
		env = append(env, []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOENV", "GOFLAGS"}[i]+"="+v)
	}

	shell := func(script string) *exec.Cmd {
		cmd := exec.Command("bash", "-x", "-e", "-u", "-o", "pipefail", "-c", script)
		cmd.Dir = root
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal
		return cmd
	}
	run := func(name, script string) string {
		t.Helper()
		cmd := shell(script)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("README First run, %s: %v\n%s\nstdout:\n%s\nstderr (bash -x):\n%s", name, err, script, out.String(), errOut.String())
		}
		return out.String()
	}

	run("before keysd", before)

	k := shell(daemon)
	var logs testkit.LockedBuffer
	k.Stdout, k.Stderr = &logs, &logs
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = k.Wait(); close(exited) }()
	t.Cleanup(func() { stopGroup(t, k.Process.Pid, exited) })
	waitHealthy(t, "http://"+addr, exited, &logs)

	out := run("after keysd", after)

	if b, err := os.ReadFile(prompts); err == nil {
		t.Errorf("the walk-through prompted for a passphrase:\n%s", b)
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	// triton key list printed alice's key, the one keysctl gave her.
	line, err := os.ReadFile(filepath.Join(home, ".ssh", "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		t.Fatal(err)
	}
	if fp := ssh.FingerprintLegacyMD5(pub); !strings.Contains(out, fp) {
		t.Errorf("the walk-through's output does not list alice's key %s:\n%s", fp, out)
	}
}

// waitHealthy polls base/healthz until keysd answers 200, failing the test
// if the process exits first or takes longer than a cold go run may.
func waitHealthy(t *testing.T, base string, exited <-chan struct{}, logs *testkit.LockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("keysd exited before it was healthy:\n%s", logs)
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("keysd not healthy at %s\n%s", base, logs)
}

// stopGroup stops a process started with Setsid and everything it started
// (go run leaves keysd a child of its own): SIGTERM to the group, then
// SIGKILL if anything is left after 30 s, so that no keysd outlives the
// test or writes into its temporary directory while it is removed.
func stopGroup(t *testing.T, pgid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Kill(-pgid, 0); err == nil {
		t.Errorf("keysd's process group survived SIGTERM for 30 s; killing it")
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	<-exited
}
