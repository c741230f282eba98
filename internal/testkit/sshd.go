package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// NeedTool returns the path of the program name. When it is not
// installed the test is skipped, except in CI (CI set), where .ci/run
// installs every tool the tests use and a missing one is a failure.
func NeedTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if p := filepath.Join(dir, name); isExecutable(p) {
				return p
			}
		}
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s is not installed (.ci/run installs it)", name)
		}
		tb.Skipf("%s is not installed", name)
	}
	return path
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// SSHDConfig is what a test sshd is configured with, beyond what every
// one has (loopback port, no passwords, no PAM, logs on stderr).
type SSHDConfig struct {
	// HostKey is the private host key's PEM; empty: a new ed25519 key.
	HostKey []byte
	// HostCertificate is the host key's certificate, one OpenSSH line;
	// empty: none.
	HostCertificate string
	// TrustedUserCAKeys are the user CA public keys, OpenSSH lines.
	TrustedUserCAKeys string
	// AuthorizedKeys is an authorized_keys file every user logs in with,
	// as a host whose copy of the keys is static has; empty: none.
	AuthorizedKeys string
	// Extra are more sshd_config lines (RevokedKeys, AuthorizedKeysCommand,
	// ...).
	Extra []string
}

// SSHD is an OpenSSH server (Debian's openssh-server) run by a test on a
// free loopback port, as root: sshd must be root to switch to the
// user who logs in.
type SSHD struct {
	Port string
	Dir  string
	// Log is sshd's log (-e): why it refused a login is in it.
	Log *LockedBuffer
}

// StartSSHD checks the configuration with sshd -t, starts sshd -D -e and
// waits until it accepts connections. It stops with the test.
func StartSSHD(tb testing.TB, cfg SSHDConfig) *SSHD {
	tb.Helper()
	sshd := NeedTool(tb, "sshd")
	keygen := NeedTool(tb, "ssh-keygen")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			tb.Fatal("the sshd tests must run as root (sshd switches to the user who logs in)")
		}
		tb.Skip("the sshd tests need root")
	}
	// sshd's privilege separation needs its empty directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	s := &SSHD{Dir: dir, Log: &LockedBuffer{}}
	hostKey := filepath.Join(dir, "host_key")
	if len(cfg.HostKey) == 0 {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
			tb.Fatalf("ssh-keygen host key: %v\n%s", err, out)
		}
	} else {
		s.write(tb, "host_key", string(cfg.HostKey))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	_, s.Port, _ = net.SplitHostPort(l.Addr().String())
	l.Close()
	authorizedKeysFile := "none"
	if cfg.AuthorizedKeys != "" {
		authorizedKeysFile = s.write(tb, "authorized_keys", cfg.AuthorizedKeys)
	}
	lines := []string{
		"Port " + s.Port,
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authorizedKeysFile,
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"LogLevel VERBOSE",
	}
	if cfg.HostCertificate != "" {
		lines = append(lines, "HostCertificate "+s.write(tb, "host_key-cert.pub", cfg.HostCertificate+"\n"))
	}
	if cfg.TrustedUserCAKeys != "" {
		lines = append(lines, "TrustedUserCAKeys "+s.write(tb, "trusted_user_ca_keys", cfg.TrustedUserCAKeys))
	}
	lines = append(lines, cfg.Extra...)
	config := s.write(tb, "sshd_config", strings.Join(lines, "\n")+"\n")
	if out, err := exec.Command(sshd, "-t", "-f", config).CombinedOutput(); err != nil {
		tb.Fatalf("sshd -t: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, sshd, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = s.Log, s.Log
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cancel()
		<-exited
		if tb.Failed() {
			tb.Logf("sshd log:\n%s", s.Log)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+s.Port)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case err := <-exited:
			tb.Fatalf("sshd exited: %v\n%s", err, s.Log)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("sshd not listening after 15s\n%s", s.Log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// write writes a file of the server's directory, mode 0600, and returns
// its path.
func (s *SSHD) write(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(s.Dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// SSH runs the OpenSSH client against the server as user, with opts
// (-o settings and others) before the destination, and command after it.
// It never asks anything (BatchMode) and reads no user configuration.
// It returns the client's combined output and its error (nil: the login
// and command succeeded).
func (s *SSHD) SSH(tb testing.TB, user string, opts []string, command ...string) (string, error) {
	tb.Helper()
	ssh := NeedTool(tb, "ssh")
	args := append([]string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "ConnectTimeout=10", "-p", s.Port}, opts...)
	args = append(args, user+"@127.0.0.1")
	args = append(args, command...)
	out, err := exec.Command(ssh, args...).CombinedOutput()
	return string(out), err
}

// WriteFile writes content to dir/name with mode 0600 (ssh refuses
// private keys others can read) and returns the path.
func WriteFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// String describes the server for messages.
func (s *SSHD) String() string { return fmt.Sprintf("sshd on 127.0.0.1:%s", s.Port) }
