package store

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Attempts can be narrowed to one systemd unit, or to one container by the
// start of its id.
func TestEventsPageFiltersByUnitAndContainer(t *testing.T) {
	s, _ := newTestStore(t)
	at := eventAt(0)
	const id = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"
	ev := func(addr string, p Process) Event {
		return Event{UID: 1001, User: "alice", Family: 4, Address: addr, Port: 25, Action: "blocked", Count: 1, FirstSeen: at, LastSeen: at, Process: p}
	}
	if err := s.RecordEvents(t.Context(), []Event{
		ev("192.0.2.1", Process{PID: 1, Comm: "php-fpm8.2", Unit: "php8.2-fpm.service", Pool: "www"}),
		ev("192.0.2.2", Process{PID: 2, Comm: "sh", Unit: "cron.service"}),
		ev("192.0.2.3", Process{PID: 3, Comm: "swaks", Unit: "docker-" + id + ".scope", Container: id}),
		ev("192.0.2.4", Process{PID: 4, Comm: "curl", Container: "web01"}),
		ev("192.0.2.5", Process{}), // nft: nothing known
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    EventFilter
		want []string
	}{
		{"unit exactly", EventFilter{Unit: "cron.service"}, []string{"alice 192.0.2.2:25"}},
		{"unit is not a prefix", EventFilter{Unit: "cron"}, nil},
		{"container by docker ps's short id", EventFilter{Container: id[:12]}, []string{"alice 192.0.2.3:25"}},
		{"container by LXC name", EventFilter{Container: "web01"}, []string{"alice 192.0.2.4:25"}},
		{"no filter keeps the unknown", EventFilter{}, []string{"alice 192.0.2.1:25", "alice 192.0.2.2:25", "alice 192.0.2.3:25", "alice 192.0.2.4:25", "alice 192.0.2.5:25"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, _, err := s.EventsPage(t.Context(), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(evs)); diff != "" {
				t.Errorf("EventsPage(%+v) (-want +got):\n%s", tt.f, diff)
			}
		})
	}
}
