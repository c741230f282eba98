package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// bench holds what the phases share: the binaries, the operator key and
// the work directory.
type bench struct {
	cfg      Config
	log      io.Writer
	work     string
	ownsWork bool
	admin    *httpsig.Signer
	adminPub string // file holding the operator's public key
}

func newBench(ctx context.Context, cfg Config, log io.Writer) (*bench, error) {
	b := &bench{cfg: cfg, log: log, work: cfg.WorkDir}
	if b.work == "" {
		dir, err := os.MkdirTemp("", "keysd-bench-")
		if err != nil {
			return nil, err
		}
		b.work, b.ownsWork = dir, true
	}
	if b.cfg.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		b.cfg.Self = self
	}
	if b.cfg.Keysd == "" {
		b.logf("building keysd")
		bin := filepath.Join(b.work, "keysd")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/keysd")
		cmd.Dir = moduleRoot()
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			b.close()
			return nil, fmt.Errorf("build keysd: %w", err)
		}
		b.cfg.Keysd = bin
	}
	signer, pub := newKey()
	b.admin = &httpsig.Signer{KeyID: httpsig.KeyIDFor("admin", pub), Key: signer}
	b.adminPub = filepath.Join(b.work, "admin.pub")
	if err := os.WriteFile(b.adminPub, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *bench) close() {
	if b.ownsWork {
		_ = os.RemoveAll(b.work)
	}
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", args...)
}

// moduleRoot is the directory of go.mod, where "go build ./cmd/keysd"
// works from.
func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "."
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// newKey returns a fresh ed25519 key and its SSH public key.
func newKey() (ed25519.PrivateKey, ssh.PublicKey) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		panic(err)
	}
	return priv, pub
}

// process is a keysd (or no-op server) running as a child process.
type process struct {
	cmd     *exec.Cmd
	URL     string
	started time.Time
	logFile *os.File
	exited  chan struct{} // closed once the process has exited
	waitErr error
}

// start starts cmd and watches for its exit.
func (p *process) start() error {
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.exited = make(chan struct{})
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	return nil
}

// startKeysd starts keysd on dataDir with the operator account "admin",
// and returns once /readyz answers 200, with how long that took.
func (b *bench) startKeysd(ctx context.Context, dataDir string, env ...string) (*process, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	logFile, err := os.OpenFile(filepath.Join(b.work, "keysd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(b.cfg.Keysd)
	cmd.Env = append(os.Environ(),
		"KEYSD_DATA_DIR="+dataDir,
		"KEYSD_HTTP_ADDR="+addr,
		"KEYSD_BOOTSTRAP_ACCOUNT=admin",
		"KEYSD_BOOTSTRAP_KEY="+b.adminPub,
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p := &process{cmd: cmd, URL: "http://" + addr, logFile: logFile}
	if err := p.start(); err != nil {
		logFile.Close()
		return nil, 0, err
	}
	took, err := p.waitFor(ctx, "/readyz", 5*time.Minute)
	if err != nil {
		p.stop()
		return nil, 0, fmt.Errorf("keysd (log in %s): %w", logFile.Name(), err)
	}
	return p, took, nil
}

// startNoop starts this program as the no-op Echo server.
func (b *bench) startNoop(ctx context.Context) (*process, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.cfg.Self, noopCommand, "-addr", addr)
	cmd.Stdout, cmd.Stderr = b.log, b.log
	p := &process{cmd: cmd, URL: "http://" + addr}
	if err := p.start(); err != nil {
		return nil, err
	}
	if _, err := p.waitFor(ctx, noopPath, 30*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitFor polls path until it answers 200 and returns the time since the
// process started.
func (p *process) waitFor(ctx context.Context, path string, limit time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		resp, err := client.Get(p.URL + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-p.exited:
			return 0, errors.New("exited before answering " + path)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("%s not 200 after %s", path, limit)
}

// stop sends SIGTERM and waits for the process to exit.
func (p *process) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	if p.logFile != nil {
		p.logFile.Close()
	}
	return p.waitErr
}

// memory returns the process's resident set size now and its peak, from
// /proc.
func (p *process) memory() (rss, peak uint64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		field, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		switch field {
		case "VmRSS":
			rss = kb * 1024
		case "VmHWM":
			peak = kb * 1024
		}
	}
	return rss, peak, sc.Err()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
