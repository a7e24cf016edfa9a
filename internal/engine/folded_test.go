package engine

import (
	"testing"

	"github.com/smtpguard/smtpguard/internal/store"
)

// A folded destination (a prefix or "other", see the daemon's folding) gets
// no allow command: it names no one address, and "other" would read as a
// host name.
func TestFoldedDestinationsHaveNoAllowCommand(t *testing.T) {
	for _, tt := range []struct {
		addr   string
		folded bool
	}{
		{"192.0.2.25", false},
		{"2001:db8::25", false},
		{"192.0.2.0/24", true},
		{"2001:db8:1:2::/64", true},
		{"other", true},
	} {
		e := store.Event{UID: 1002, User: "bob", Address: tt.addr, Port: 25}
		if got := Folded(e); got != tt.folded {
			t.Errorf("Folded(%s) = %v, want %v", tt.addr, got, tt.folded)
		}
		if got := AllowCommand(e); (got == "") != tt.folded {
			t.Errorf("AllowCommand(%s) = %q, want a command only for one address", tt.addr, got)
		}
	}
	got := TotalsByUser([]EventView{
		{Event: store.Event{UID: 1002, User: "bob", Address: "2001:db8:1:2::/64", Port: 25, Count: 5}},
		{Event: store.Event{UID: 1002, User: "bob", Address: "2001:db8:1:3::/64", Port: 25, Count: 5}},
		{Event: store.Event{UID: 1002, User: "bob", Address: "other", Port: 25, Count: 90}},
	})
	if len(got) != 1 || got[0].Attempts != 100 || got[0].Destinations != 3 {
		t.Errorf("TotalsByUser of folded rows = %+v, want 100 attempts to 3 destinations", got)
	}
}
