package sealing_test

import (
	"sync"
	"testing"

	"github.com/infrakeys/infrakeys/sealing"
)

func TestKeyring(t *testing.T) {
	current := MustNewMasterKey(t)
	older := MustNewMasterKey(t)
	r := sealing.NewKeyring(current, older)

	t.Run("Current", func(t *testing.T) {
		if got, want := r.Current().ID(), current.ID(); got != want {
			t.Errorf("Current = %s, want %s", got, want)
		}
	})

	t.Run("GetCurrentAndOlder", func(t *testing.T) {
		for _, m := range []*sealing.MasterKey{current, older} {
			got, ok := r.Get(m.ID())
			if !ok || got.ID() != m.ID() {
				t.Errorf("Get(%s) = %v, %v", m.ID(), got, ok)
			}
		}
	})

	t.Run("GetUnknown", func(t *testing.T) {
		if got, ok := r.Get(MustNewMasterKey(t).ID()); ok {
			t.Errorf("Get of an unknown id = %v", got)
		}
	})

	t.Run("ConcurrentUse", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				// t.Fatal must not be called off the test goroutine, so no MustSeal.
				s, w, err := sealing.Seal(r.Current(), keyA, privateKey)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := sealing.Open(r, keyA, s, w); err != nil {
					t.Error(err)
				}
				if _, err := sealing.Rewrap(r, keyA.SecretID, w, older); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	})
}
