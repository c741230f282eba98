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
// which KV buckets refuse.
const (
	DataKeysStream  = "KEYSD_DATAKEYS"
	dataKeysSubject = "keysd.datakeys"
)

// DataKeys stores wrapped data keys.
type DataKeys struct {
	js     jetstream.JetStream
	stream jetstream.Stream
}

// OpenDataKeys creates or updates the data keys stream.
func OpenDataKeys(ctx context.Context, c *Conn) (*DataKeys, error) {
	cfg := jetstream.StreamConfig{
		Name:              DataKeysStream,
		Description:       "infrakeys wrapped data keys; destroying one crypto-shreds its private key",
		Subjects:          []string{dataKeysSubject + ".*"},
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: 1,
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
// destroyed (domain.ErrVersionConflict).
func (d *DataKeys) Replace(ctx context.Context, id string, wrapped []byte, rev uint64) error {
	err := retry(ctx, func(ctx context.Context) error {
		_, err := d.js.Publish(ctx, dataKeySubject(id), wrapped, jetstream.WithExpectLastSequencePerSubject(rev))
		return err
	})
	return classify(err)
}

// Get returns the wrapped data key of secret id and its revision; nil if
// there is none (never stored, or destroyed).
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

// Destroy overwrites the data key of secret id on disk and removes it.
// Destroying a missing data key is not an error.
func (d *DataKeys) Destroy(ctx context.Context, id string) error {
	var m *jetstream.RawStreamMsg
	err := retry(ctx, func(ctx context.Context) (err error) {
		m, err = d.stream.GetLastMsgForSubject(ctx, dataKeySubject(id))
		return err
	})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = retry(ctx, func(ctx context.Context) error { return d.stream.SecureDeleteMsg(ctx, m.Sequence) })
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
		// Someone else (the cascade and the shredder both destroy what a
		// removed key leaves) deleted it between our read and our delete:
		// the server says "no message found" only as text, so look.
		gerr := retry(ctx, func(ctx context.Context) error {
			_, err := d.stream.GetMsg(ctx, m.Sequence)
			return err
		})
		if errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
	}
	return err
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
