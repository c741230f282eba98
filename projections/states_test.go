package projections

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// advanceInstance gives what applying the events one by one gives, and
// leaves the state it starts from as it was.
func TestAdvanceInstance(t *testing.T) {
	pair, err := domain.GenerateKeyPair("ed25519", "")
	if err != nil {
		t.Fatal(err)
	}
	m := domain.Meta{Actor: "test", CausationID: domain.IntakeCause("i")}
	var seq uint64
	var log []bus.Recorded
	in := &domain.Instance{ID: "vm", Keys: []domain.InfraKey{}}
	// record decides e against the state so far, applies and logs it.
	record := func(e domain.Event, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		seq += 3 // other owners' events in between
		log = append(log, bus.Recorded{Seq: seq, Event: e})
		if in, err = domain.ApplyInstanceEvent(in, e, seq); err != nil {
			t.Fatal(err)
		}
	}
	add := func(name string) {
		m.CausationID = domain.IntakeCause("add-" + name + fmt.Sprint(seq))
		record(in.AddKey(domain.NewInfraKey{ID: fmt.Sprint("id-", name, seq), Name: name, Pair: pair}, m))
	}
	del := func(name string) { record(in.DeleteKey(name, m)) }
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	addExpiring := func(name string) {
		m.CausationID = domain.IntakeCause("add-" + name + fmt.Sprint(seq))
		record(in.AddKey(domain.NewInfraKey{ID: fmt.Sprint("id-", name, seq), Name: name, Pair: pair, Expires: &expires}, m))
	}
	expire := func() {
		for _, e := range in.ExpireKeys(expires, m) {
			record(e, nil)
		}
	}
	for i := range 6 {
		add(fmt.Sprint("k", i))
	}
	addExpiring("x0")
	addExpiring("x2")
	base := len(log)
	// The batch: deletions of base keys and of its own, a name deleted
	// and made again, expiries of base keys and of its own (one deleted
	// and made again, without expiry), the removal and its cascade.
	addExpiring("x1")
	expire()
	del("x2")
	add("x2")
	del("k1")
	add("new1")
	add("k1")
	add("new2")
	del("new1")
	del("k4")
	add("new1")
	record(in.Remove(m)[0], nil)
	for _, e := range in.Cascade(2, m) {
		record(e, nil)
	}

	var start *domain.Instance
	for _, r := range log[:base] {
		if start, err = domain.ApplyInstanceEvent(start, r.Event, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	before := cloneInstance(start)
	before.Keys = append([]domain.InfraKey(nil), start.Keys...)
	got, err := advanceInstance(start, log[base:])
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) {
		t.Errorf("batch:\n got %+v\nwant %+v", got, in)
	}
	if !reflect.DeepEqual(start, before) {
		t.Errorf("the state advanced from changed")
	}
	again, err := advanceInstance(got, log)
	if err != nil || !reflect.DeepEqual(again, in) {
		t.Errorf("events applied twice change the state: %+v, %v", again, err)
	}
}
