package projections

import (
	"fmt"
	"testing"
)

// The state cache holds at most its budget of approximate bytes, least
// recently used out first, and never goes back to an older version.
func TestStateCache(t *testing.T) {
	type state struct{ bytes int }
	c := newStateCache(100, func(s *state) int { return s.bytes })
	for i := range 5 {
		c.put(fmt.Sprint(i), &state{30}, 1)
	}
	if n, bytes := c.len(); n != 3 || bytes != 90 {
		t.Errorf("holds %d states, %d bytes; want 3, 90", n, bytes)
	}
	for _, id := range []string{"0", "1"} {
		if _, _, ok := c.get(id); ok {
			t.Errorf("%s: still cached, want evicted (least recently used)", id)
		}
	}
	c.get("2") // now the most recently used
	c.put("5", &state{30}, 1)
	if _, _, ok := c.get("2"); !ok {
		t.Error("2 evicted although just used")
	}
	if _, _, ok := c.get("3"); ok {
		t.Error("3 kept although least recently used")
	}

	t.Run("NewerWins", func(t *testing.T) {
		newer := &state{10}
		c.put("2", newer, 5)
		c.put("2", &state{10}, 4)
		if got, v, _ := c.get("2"); got != newer || v != 5 {
			t.Errorf("version %d, want 5: an older state replaced a newer one", v)
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		c.put("big", &state{101}, 1)
		if _, _, ok := c.get("big"); ok {
			t.Error("a state over the whole budget was cached")
		}
		if _, bytes := c.len(); bytes > 100 {
			t.Errorf("%d bytes held, budget 100", bytes)
		}
	})
	t.Run("Claim", func(t *testing.T) {
		st, _, _ := c.get("2")
		if !c.claim("2", st) {
			t.Fatal("first claim of the cached state refused")
		}
		if c.claim("2", st) {
			t.Error("a second claim of the same state allowed")
		}
		if c.claim("2", &state{10}) {
			t.Error("a claim of a state that is not the cached one allowed")
		}
	})
}
