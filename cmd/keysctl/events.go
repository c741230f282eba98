package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

const eventsUsage = `keysctl events: replay the event log as JSON lines, straight from NATS

Usage:
  keysctl events [flags]         replay (and with --follow, tail) the log
  keysctl events stats [flags]   how large the log is

Flags (and environment), as the audit role:
` + natsFlagsUsage + `  --from-seq N       start at stream sequence N
  --since TIME       start at the first event at or after TIME (RFC 3339, or a duration ago: 1h)
  --type T[,T...]    only these event types
  --owner KIND/ID    only this owner's events (account/alice, shared/web, instance/i-1)
  --key K            only events about key K (name, id or fingerprint)
  --follow           keep printing new events until interrupted
  --progress         show progress on stderr (default: when stderr is a terminal)
`

// eventsCmd runs "keysctl events ...": it reads the log over NATS as an
// audit consumer, not through keysd's HTTP API.
func eventsCmd(ctx context.Context, args []string, env *environ, stdout, stderr io.Writer) error {
	stats := len(args) > 0 && args[0] == "stats"
	if stats {
		args = args[1:]
	}
	fs := flag.NewFlagSet("keysctl events", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, eventsUsage) }
	var conn natsFlags
	conn.register(fs, env)
	fromSeq := fs.Uint64("from-seq", 0, "")
	since := fs.String("since", "", "")
	types := fs.String("type", "", "")
	owner := fs.String("owner", "", "")
	key := fs.String("key", "", "")
	follow := fs.Bool("follow", false, "")
	progress := fs.Bool("progress", isTerminal(stderr), "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *fromSeq > 0 && *since != "" {
		return errors.New("give --from-seq or --since, not both")
	}
	q := eventsQuery{ro: bus.ReplayOptions{StartSeq: *fromSeq, Follow: *follow}, types: map[string]bool{}, key: *key, progress: *progress}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return err
		}
		q.ro.StartTime = t
	}
	if *owner != "" {
		kind, id, ok := strings.Cut(*owner, "/")
		if !ok || kind == "" || id == "" {
			return fmt.Errorf("--owner %q: want KIND/ID, e.g. account/alice", *owner)
		}
		q.ro.Subjects = []string{bus.OwnerSubject(domain.Owner{Kind: kind, ID: id})}
	}
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t != "" {
			q.types[t] = true
		}
	}
	nc, ctx, cancel, err := conn.connect(ctx, bus.RoleAudit, stderr)
	if err != nil {
		return err
	}
	defer cancel(nil)
	defer nc.Close()
	return refused(ctx, events(ctx, nc, stats, q, stdout, stderr))
}

// eventsQuery is what "keysctl events" was asked for.
type eventsQuery struct {
	ro       bus.ReplayOptions
	types    map[string]bool // empty: every type
	key      string          // empty: every key
	progress bool
}

// events prints the log's statistics, or replays it as q says.
func events(ctx context.Context, nc *nats.Conn, stats bool, q eventsQuery, stdout, stderr io.Writer) error {
	log, err := bus.AttachEventLog(ctx, nc)
	if err != nil {
		return err
	}
	if stats {
		return printStats(ctx, log, stdout)
	}

	var about *keyFilter
	ro := q.ro
	if q.key != "" {
		about = &keyFilter{key: q.key, following: map[string]bool{}}
	}
	var p *progressLine
	if q.progress {
		p = &progressLine{w: stderr, tty: isTerminal(stderr)}
		ro.Pending = p.pending
		defer p.done()
	}
	enc := json.NewEncoder(stdout)
	_, err = log.Replay(ctx, ro, func(r bus.Recorded) error {
		if p != nil {
			p.delivered++
		}
		if len(q.types) > 0 && !q.types[r.Event.Type] {
			return nil
		}
		if about != nil && !about.match(r.Event) {
			return nil
		}
		if p != nil {
			p.clear()
		}
		return enc.Encode(struct {
			Seq uint64 `json:"seq"`
			domain.Event
		}{r.Seq, r.Event})
	})
	if errors.Is(err, context.Canceled) && ro.Follow {
		return nil
	}
	return err
}

// keyFilter selects the events about one key, named by its name, id or
// fingerprint (MD5, with or without "MD5:", or SHA256:...). Events carry
// fewer identifiers as a key's history goes on (a KeyDeleted has no
// SHA-256 fingerprint, an account key no id), so once an event matches,
// every later event of the same owner about the same name matches too,
// until the key is deleted.
type keyFilter struct {
	key       string
	following map[string]bool // owner kind/id + "\x00" + key name
}

func (f *keyFilter) match(e domain.Event) bool {
	if e.Owner.Kind == domain.OwnerToken {
		return false // tokens have names and ids, but are no keys
	}
	var p struct {
		ID                string `json:"id"`
		KeyID             string `json:"keyId"` // an IntakeDuplicate's
		Name              string `json:"name"`
		Fingerprint       string `json:"fingerprint"`
		FingerprintSHA256 string `json:"fingerprintSHA256"`
	}
	if json.Unmarshal(e.Data, &p) != nil || p.Name == "" {
		return false
	}
	k := e.Owner.String() + "\x00" + p.Name
	ok := f.following[k]
	for _, v := range []string{p.ID, p.KeyID, p.Name, p.Fingerprint, p.FingerprintSHA256} {
		if v != "" && (v == f.key || "MD5:"+v == f.key) {
			ok = true
		}
	}
	switch {
	case ok && e.Type == domain.TypeKeyDeleted:
		delete(f.following, k)
	case ok:
		f.following[k] = true
	}
	return ok
}

// parseSince reads an RFC 3339 time or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time (2026-11-22T10:00:00Z) or a duration (90m)", s)
}

func printStats(ctx context.Context, log *bus.EventLog, stdout io.Writer) error {
	info, err := log.Stream().Info(ctx)
	if err != nil {
		return err
	}
	st := info.State
	out := map[string]any{
		"stream":    info.Config.Name,
		"events":    st.Msgs,
		"bytes":     st.Bytes,
		"firstSeq":  st.FirstSeq,
		"lastSeq":   st.LastSeq,
		"firstTime": st.FirstTime,
		"lastTime":  st.LastTime,
		"owners":    st.NumSubjects,
		"replicas":  info.Config.Replicas,
		"maxAge":    info.Config.MaxAge.String(),
		"maxBytes":  info.Config.MaxBytes,
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// progressLine shows how far a replay is, at most twice a second: on a
// terminal as one line rewritten in place (and wiped before an event is
// printed, should stdout be the same terminal), elsewhere a line each time.
type progressLine struct {
	w         io.Writer
	tty       bool
	delivered uint64
	last      time.Time
	shown     bool
}

func (p *progressLine) pending(left uint64) {
	if time.Since(p.last) < 500*time.Millisecond && left > 0 {
		return
	}
	p.last = time.Now()
	total := p.delivered + left
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(p.delivered) / float64(total)
	}
	line := fmt.Sprintf("replayed %s of %s events (%.0f%%)", strconv.FormatUint(p.delivered, 10), strconv.FormatUint(total, 10), pct)
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K"+line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.w, line)
}

// clear wipes the progress line before an event is printed.
func (p *progressLine) clear() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.shown = false
	}
}

func (p *progressLine) done() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
