package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// The data keys stream keeps wrapped data keys apart from the event log,
// one subject per sealed secret. It is a plain stream, not a KV bucket,
// because destroying a data key must overwrite it on disk (secure delete),
// which KV buckets refuse. For the same reason it keeps every message of a
// subject (no per-subject limit): a limit removes a replaced message
// without overwriting it, leaving the data key wrapped by the old master
// key readable in the files. Replace erases the replaced message itself,
// securely, once the new one is stored.
const (
	DataKeysStream  = "KEYSD_DATAKEYS"
	dataKeysSubject = "keysd.datakeys"
)

// DataKeys stores wrapped data keys.
type DataKeys struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// OpenDataKeys creates the data keys stream, or updates the configuration
// of an existing one (a stream made by an older keysd had a per-subject
// limit of 1).
func OpenDataKeys(ctx context.Context, c *Conn) (*DataKeys, error) {
	cfg := jetstream.StreamConfig{
		Name:              DataKeysStream,
		Description:       "infrakeys wrapped data keys; destroying one crypto-shreds its private key",
		Subjects:          []string{dataKeysSubject + ".*"},
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: -1,
		AllowDirect:       false,
		Compression:       jetstream.NoCompression,
	}
	var s jetstream.Stream
	err := retry(ctx, func(ctx context.Context) (err error) {
		s, err = c.JS.CreateOrUpdateStream(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create stream %s: %w", DataKeysStream, err)
	}
	return &DataKeys{js: c.JS, stream: s}, nil
}

func dataKeySubject(id string) string { return dataKeysSubject + "." + Token(id) }

// Create stores the wrapped data key of a new secret; it fails if one exists.
func (d *DataKeys) Create(ctx context.Context, id string, wrapped []byte) error {
	// The message id makes a retried create (lost acknowledgement) a
	// duplicate instead of a conflict.
	return retry(ctx, func(ctx context.Context) error {
		_, err := d.js.Publish(ctx, dataKeySubject(id), wrapped,
			jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithMsgID("create:"+id))
		return err
	})
}

// Replace stores a re-wrapped data key over the one at revision rev, and
// only if it is still there: a data key destroyed meanwhile stays
// destroyed (domain.ErrVersionConflict). Once the new one is stored, the
// replaced one is erased with a secure delete, so that the files do not
// keep a copy wrapped by the master key being retired.
func (d *DataKeys) Replace(ctx context.Context, id string, wrapped []byte, rev uint64) error {
	var ack *jetstream.PubAck
	err := retry(ctx, func(ctx context.Context) (err error) {
		ack, err = d.js.Publish(ctx, dataKeySubject(id), wrapped, jetstream.WithExpectLastSequencePerSubject(rev))
		return err
	})
	if err != nil {
		return classify(err)
	}
	if err := d.erase(ctx, id, ack.Sequence); err != nil {
		return fmt.Errorf("bus: data key %s replaced, but erasing the replaced one failed (EraseStale finishes it): %w", id, err)
	}
	return nil
}

// Get returns the wrapped data key of secret id and its revision; nil if
// there is none (never stored, or destroyed). With a replaced one not yet
// erased, it is the latest.
func (d *DataKeys) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	var m *jetstream.RawStreamMsg
	err := retry(ctx, func(ctx context.Context) (err error) {
		m, err = d.stream.GetLastMsgForSubject(ctx, dataKeySubject(id))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	return m.Data, m.Sequence, nil
}

// Destroy overwrites every stored data key of secret id on disk and
// removes it. Destroying a missing data key is not an error.
func (d *DataKeys) Destroy(ctx context.Context, id string) error {
	return d.erase(ctx, id, 0)
}

// erase securely deletes the messages of secret id's subject below
// sequence below, or all of them when below is 0.
func (d *DataKeys) erase(ctx context.Context, id string, below uint64) error {
	subj := dataKeySubject(id)
	for from := uint64(1); ; {
		var m *jetstream.RawStreamMsg
		err := retry(ctx, func(ctx context.Context) (err error) {
			m, err = d.stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
			return err
		})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if below != 0 && m.Sequence >= below {
			return nil
		}
		if err := d.secureDelete(ctx, m.Sequence); err != nil {
			return err
		}
		from = m.Sequence + 1
	}
}

// secureDelete overwrites message seq on disk and removes it. A message
// someone else deleted first is no error: an event delivered again (to
// another replica's shredder, after a crash or an AckWait) destroys the
// same data key, and whichever comes second finds it gone between its read
// and its delete, which the server reports only as the text "no message
// found".
func (d *DataKeys) secureDelete(ctx context.Context, seq uint64) error {
	err := retry(ctx, func(ctx context.Context) error { return d.stream.SecureDeleteMsg(ctx, seq) })
	if err == nil || errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		gerr := retry(ctx, func(ctx context.Context) error {
			_, err := d.stream.GetMsg(ctx, seq)
			return err
		})
		if errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
	}
	return err
}

// EraseStale securely erases every replaced data key still stored: those
// a Replace stored the new one of but could not erase (a crash, NATS
// unavailable in between). It returns how many it erased.
func (d *DataKeys) EraseStale(ctx context.Context) (int, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) (err error) {
		info, err = d.stream.Info(ctx, jetstream.WithSubjectFilter(dataKeysSubject+".*"))
		return err
	})
	if err != nil {
		return 0, err
	}
	erased := 0
	for subj, n := range info.State.Subjects {
		if n < 2 {
			continue
		}
		id, err := Untoken(subj[len(dataKeysSubject)+1:])
		if err != nil {
			return erased, err
		}
		_, latest, err := d.Get(ctx, id)
		if err != nil {
			return erased, err
		}
		if latest == 0 {
			continue // destroyed meanwhile
		}
		if err := d.erase(ctx, id, latest); err != nil {
			return erased, err
		}
		erased += int(n - 1)
	}
	return erased, nil
}

// IDs returns the ids of every stored data key.
func (d *DataKeys) IDs(ctx context.Context) ([]string, error) {
	var info *jetstream.StreamInfo
	err := retry(ctx, func(ctx context.Context) (err error) {
		info, err = d.stream.Info(ctx, jetstream.WithSubjectFilter(dataKeysSubject+".*"))
		return err
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		id, err := Untoken(subj[len(dataKeysSubject)+1:])
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}
