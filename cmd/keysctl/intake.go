package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// The driver's and the resource manager's verbs: what they publish to
// keysd's intake and ask of it, over NATS with the role's NKey, so that a
// driver author or an operator can speak to the bus without writing code.

const intakeUsage = `keysctl driver|manager: speak to keysd's intake as a resource driver or the resource manager

Usage:
  keysctl driver publish-key INSTANCE --name NAME [--public-key FILE] [--private-key FILE]
                 [--description TEXT] [--scope instance|shared] [--expires TIME]
                 [--string-form] [flags]
  keysctl driver remove-instance INSTANCE [flags]
  keysctl driver outcome INSTANCE (--msg-id ID | --seq N) [--key-name NAME] [flags]
  keysctl manager remove-instance INSTANCE [flags]
  keysctl manager outcome INSTANCE (--msg-id ID | --seq N) [--key-name NAME] [flags]

publish-key publishes a key generated for INSTANCE, remove-instance announces
that INSTANCE is gone; both wait for keysd's outcome and print it as JSON
(exit status 1 if it is a rejection, or not there within --wait). outcome
asks what became of a message, by its Nats-Msg-Id or by the intake stream
sequence of its publish acknowledgement, and prints the answer: the outcome,
"pending" or "unknown" (see docs/events.md, "Driver intake").

Key flags:
  --name NAME          the key's name (required)
  --public-key FILE    OpenSSH public key file (optional with --private-key)
  --private-key FILE   PEM private key file; read from the file only, never
                       given on the command line, where ps would show it
  --description TEXT   the key's description
  --scope SCOPE        instance (default): the instance's key; shared: a key
                       of the shared pool
  --expires TIME       when the key expires by itself, an RFC 3339 time such
                       as 2030-01-02T15:04:05Z (default: never)
  --string-form        send LM's string form <keyName>#<privateKey>#<publicKey>
                       instead of the JSON object (scope instance, no
                       description, no expiry)

Message flags:
  --msg-id ID          Nats-Msg-Id (default: keysctl-<ULID>): a message
                       published again with the same id is not processed twice
  --correlation-id ID  Keysd-Correlation-Id: the correlationId of its events
  --wait DURATION      how long to wait for the outcome (default 30s)

Connection flags (and environment):
` + natsFlagsUsage

// intakeCmd runs "keysctl driver ..." and "keysctl manager ...": role is
// the role whose NKey signs in (bus.RoleDriver or bus.RoleManager).
func intakeCmd(ctx context.Context, role string, args []string, env *environ, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) || args[0] == "help" {
		fmt.Fprint(stderr, intakeUsage)
		if len(args) == 0 {
			return errors.New("missing command")
		}
		return flag.ErrHelp
	}
	verb := args[0]
	switch {
	case verb == "publish-key" && role == bus.RoleDriver, verb == "remove-instance", verb == "outcome":
	default:
		fmt.Fprint(stderr, intakeUsage)
		return fmt.Errorf("unknown command %q", role+" "+verb)
	}
	fs := flag.NewFlagSet("keysctl "+role+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, intakeUsage) }
	var conn natsFlags
	conn.register(fs, env)
	var m intakeMessage
	var seq uint64
	var keyName string
	wait := 30 * time.Second
	fs.StringVar(&m.msgID, "msg-id", "", "")
	switch verb {
	case "publish-key":
		fs.StringVar(&m.key.Name, "name", "", "")
		fs.StringVar(&m.publicKeyFile, "public-key", "", "")
		fs.StringVar(&m.privateKeyFile, "private-key", "", "")
		fs.StringVar(&m.key.Description, "description", "", "")
		fs.StringVar(&m.key.Scope, "scope", "", "")
		fs.StringVar(&m.key.Expires, "expires", "", "")
		fs.BoolVar(&m.stringForm, "string-form", false, "")
		fallthrough
	case "remove-instance":
		fs.StringVar(&m.correlationID, "correlation-id", "", "")
		fs.DurationVar(&wait, "wait", wait, "")
	case "outcome":
		fs.Uint64Var(&seq, "seq", 0, "")
		fs.StringVar(&keyName, "key-name", "", "")
	}
	pos, err := parseCommand(fs, args[1:], 1)
	if err != nil {
		return err
	}
	instance := pos[0]

	if verb == "outcome" {
		if m.msgID == "" && seq == 0 {
			return errors.New("outcome: give --msg-id or --seq")
		}
		nc, ctx, cancel, err := conn.connect(ctx, role, stderr)
		if err != nil {
			return err
		}
		defer cancel(nil)
		defer nc.Close()
		req := bus.OutcomeRequest{InstanceID: instance, MsgID: m.msgID, Seq: seq, KeyName: keyName}
		r, err := askOutcome(ctx, nc, req)
		if err != nil {
			return refused(ctx, err)
		}
		return printOutcome(stdout, r, role, false)
	}

	if verb == "publish-key" {
		if m.body, err = m.keyBody(); err != nil {
			return err
		}
		m.subject = bus.IntakeKeySubject(instance)
	} else {
		m.subject = bus.IntakeRemovedSubject(instance)
	}
	if m.msgID == "" {
		m.msgID = "keysctl-" + ulid.Make().String()
	}
	nc, ctx, cancel, err := conn.connect(ctx, role, stderr)
	if err != nil {
		return err
	}
	defer cancel(nil)
	defer nc.Close()
	r, err := publishIntake(ctx, nc, instance, m, wait)
	if err != nil {
		return refused(ctx, err)
	}
	return printOutcome(stdout, r, role, true)
}

func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// intakeMessage is a message for the intake stream.
type intakeMessage struct {
	subject        string
	body           []byte
	msgID          string
	correlationID  string
	key            domain.DriverKey
	publicKeyFile  string
	privateKeyFile string
	stringForm     bool
}

// keyBody is the body of a key message, in the form asked for.
func (m *intakeMessage) keyBody() ([]byte, error) {
	if m.key.Name == "" {
		return nil, errors.New("publish-key: --name is required")
	}
	if m.publicKeyFile == "" && m.privateKeyFile == "" {
		return nil, errors.New("publish-key: give --public-key FILE, --private-key FILE, or both")
	}
	if m.publicKeyFile != "" {
		pub, err := readKeyFile(m.publicKeyFile)
		if err != nil {
			return nil, err
		}
		m.key.PublicKey = pub
	}
	if m.privateKeyFile != "" {
		priv, err := os.ReadFile(m.privateKeyFile)
		if err != nil {
			return nil, err
		}
		m.key.PrivateKey = string(priv)
	}
	if m.stringForm {
		if m.key.Scope != "" && m.key.Scope != domain.ScopeInstance || m.key.Description != "" || m.key.Expires != "" {
			return nil, errors.New("publish-key: the string form carries no --scope shared, --description nor --expires; leave out --string-form")
		}
		return []byte(m.key.Name + "#" + m.key.PrivateKey + "#" + m.key.PublicKey), nil
	}
	return json.Marshal(m.key)
}

// publishIntake stores m in the intake stream and waits up to wait for
// keysd's outcome, published to an inbox named in Keysd-Reply-To. Without
// one in time, it asks for the outcome: "pending" says the message is
// stored and waits for keysd.
func publishIntake(ctx context.Context, nc *nats.Conn, instance string, m intakeMessage, wait time.Duration) (bus.OutcomeReply, error) {
	sub, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		return bus.OutcomeReply{}, err
	}
	defer sub.Unsubscribe()
	js, err := jetstream.New(nc)
	if err != nil {
		return bus.OutcomeReply{}, err
	}
	msg := nats.NewMsg(m.subject)
	msg.Data = m.body
	msg.Header.Set(jetstream.MsgIDHeader, m.msgID)
	msg.Header.Set(bus.HeaderReplyTo, sub.Subject)
	if m.correlationID != "" {
		msg.Header.Set(bus.HeaderCorrelationID, m.correlationID)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ack, err := js.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		return bus.OutcomeReply{}, fmt.Errorf("publish to %s: %w (not stored: publish again, with --msg-id %s)", m.subject, refused(ctx, err), m.msgID)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	reply, err := sub.NextMsgWithContext(wctx)
	if err == nil {
		var r bus.OutcomeReply
		if err := json.Unmarshal(reply.Data, &r); err != nil {
			return bus.OutcomeReply{}, fmt.Errorf("outcome %q: %w", reply.Data, err)
		}
		return r, nil
	}
	if ctx.Err() != nil {
		return bus.OutcomeReply{}, ctx.Err()
	}
	return askOutcome(ctx, nc, bus.OutcomeRequest{InstanceID: instance, MsgID: m.msgID, Seq: ack.Sequence})
}

// askOutcome sends an outcome request.
func askOutcome(ctx context.Context, nc *nats.Conn, req bus.OutcomeRequest) (bus.OutcomeReply, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return bus.OutcomeReply{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := nc.RequestWithContext(rctx, bus.OutcomeSubject, data)
	if err != nil {
		return bus.OutcomeReply{}, fmt.Errorf("outcome request: %w", err)
	}
	var r bus.OutcomeReply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return bus.OutcomeReply{}, fmt.Errorf("outcome reply %q: %w", resp.Data, err)
	}
	return r, nil
}

// printOutcome prints r as keysd encodes it. An error answer, a rejection,
// and (for a message just published) no final outcome yet are errors too,
// for the exit status.
func printOutcome(stdout io.Writer, r bus.OutcomeReply, role string, published bool) error {
	var out bytes.Buffer
	if err := json.Indent(&out, r.Encode(), "", "  "); err != nil {
		return err
	}
	fmt.Fprintln(stdout, out.String())
	switch {
	case r.Error != nil:
		return fmt.Errorf("%s: %s", r.Error.Code, r.Error.Message)
	case r.Outcome == domain.OutcomeRejected:
		return fmt.Errorf("rejected (%s): %s", r.Reason, r.Message)
	case published && (r.Outcome == bus.OutcomePending || r.Outcome == bus.OutcomeUnknown):
		return fmt.Errorf("no outcome yet (%s): ask again with keysctl %s outcome %s --msg-id %s", r.Outcome, role, r.InstanceID, strings.TrimPrefix(r.IntakeID, "msg:"))
	}
	return nil
}
