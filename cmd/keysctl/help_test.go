package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/internal/testkit"
)

// Help asked for is help given: exit status 0, the usage on stderr, and
// nothing done (no account needed, no file written). A command that is
// not one fails.
func TestHelpExitsZero(t *testing.T) {
	dir := t.TempDir()
	bin, err := testkit.Build(dir, "github.com/infrakeys/infrakeys/cmd/keysctl")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	keysctlBin := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		cmd.Env = []string{"HOME=" + work} // no account, no key
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"account", "create", "--help"}, {"key", "list", "-h"}, {"token", "create", "--help"},
		{"projections", "rebuild", "--help"}, {"master-key", "generate", "--help"}, {"authorized-keys", "--help"},
		{"events", "--help"}, {"events", "stats", "--help"},
		{"driver", "--help"}, {"driver", "publish-key", "--help"}, {"manager", "outcome", "--help"},
		{"krl", "--help"}, {"krl", "fetch", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, err := keysctlBin(args...)
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			if !strings.Contains(out, "Usage") || !strings.Contains(out, "keysctl") {
				t.Errorf("output %q", out)
			}
		})
	}
	if entries, err := os.ReadDir(work); err != nil || len(entries) != 0 {
		t.Errorf("asking for help wrote %v (%v)", entries, err)
	}
	for _, args := range [][]string{{}, {"bogus", "command"}, {"driver", "bogus"}, {"account", "create", "--bogus"}, {"krl", "bogus"}} {
		t.Run("Err "+strings.Join(args, " "), func(t *testing.T) {
			out, err := keysctlBin(args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1\n%s", err, out)
			}
		})
	}
}
