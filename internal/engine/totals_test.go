package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

func TestTotalsByUserRanksByAttempts(t *testing.T) {
	ev := func(uid uint32, user, addr string, port uint16, count int64) EventView {
		return EventView{Event: store.Event{UID: uid, User: user, Address: addr, Port: port, Count: count}}
	}
	got := TotalsByUser([]EventView{
		ev(1001, "alice", "192.0.2.10", 25, 3),
		ev(1002, "bob", "192.0.2.10", 25, 5),
		ev(1001, "alice", "192.0.2.10", 587, 1),
		ev(1001, "alice", "192.0.2.10", 25, 2), // another minute, same destination
		ev(33, "www-data", "2001:db8::25", 25, 6),
		ev(1003, "", "192.0.2.11", 465, 6), // a uid without an account
	})
	want := []UserTotal{
		{User: "www-data", UID: 33, Attempts: 6, Destinations: 1},
		{User: "alice", UID: 1001, Attempts: 6, Destinations: 2},
		{User: "", UID: 1003, Attempts: 6, Destinations: 1},
		{User: "bob", UID: 1002, Attempts: 5, Destinations: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TotalsByUser (-want +got):\n%s", diff)
	}
}
