package store

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// minute0 is on a minute boundary, so offsets below a minute share its bucket.
var minute0 = time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)

func eventAt(d time.Duration) time.Time { return minute0.Add(d) }

// bobBlocked is one aggregate from bob (uid 1002) to 192.0.2.25:25.
func bobBlocked(count int64, first, last time.Duration) Event {
	return Event{
		UID: 1002, User: "bob", Family: 4, Address: "192.0.2.25", Port: 25, Action: "blocked",
		Count: count, FirstSeen: eventAt(first), LastSeen: eventAt(last),
	}
}

func withEvent(e Event, change func(*Event)) Event {
	change(&e)
	return e
}

func TestRecordEventsAggregates(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]Event
		want    []Event // as Events returns them: most recently seen first
	}{
		{
			name:    "one event",
			batches: [][]Event{{bobBlocked(3, 10*time.Second, 20*time.Second)}},
			want:    []Event{bobBlocked(3, 10*time.Second, 20*time.Second)},
		},
		{
			name: "same key in two batches sums and widens",
			batches: [][]Event{
				{bobBlocked(3, 10*time.Second, 20*time.Second)},
				{bobBlocked(2, 5*time.Second, 50*time.Second)},
			},
			want: []Event{bobBlocked(5, 5*time.Second, 50*time.Second)},
		},
		{
			name: "a narrower later batch keeps the wider window",
			batches: [][]Event{
				{bobBlocked(3, 5*time.Second, 50*time.Second)},
				{bobBlocked(4, 20*time.Second, 30*time.Second)},
			},
			want: []Event{bobBlocked(7, 5*time.Second, 50*time.Second)},
		},
		{
			name:    "same key twice in one batch",
			batches: [][]Event{{bobBlocked(1, 10*time.Second, 10*time.Second), bobBlocked(1, 40*time.Second, 40*time.Second)}},
			want:    []Event{bobBlocked(2, 10*time.Second, 40*time.Second)},
		},
		{
			name: "different minute is a separate row",
			batches: [][]Event{
				{bobBlocked(3, 10*time.Second, 20*time.Second)},
				{bobBlocked(2, 70*time.Second, 80*time.Second)},
			},
			want: []Event{bobBlocked(2, 70*time.Second, 80*time.Second), bobBlocked(3, 10*time.Second, 20*time.Second)},
		},
		{
			name: "different action is a separate row",
			batches: [][]Event{{
				bobBlocked(3, 10*time.Second, 20*time.Second),
				withEvent(bobBlocked(2, 10*time.Second, 30*time.Second), func(e *Event) { e.Action = "logged" }),
			}},
			// Within a minute rows are ordered by uid, destination, port, action.
			want: []Event{
				bobBlocked(3, 10*time.Second, 20*time.Second),
				withEvent(bobBlocked(2, 10*time.Second, 30*time.Second), func(e *Event) { e.Action = "logged" }),
			},
		},
		{
			name: "different port, destination and uid are separate rows",
			batches: [][]Event{{
				bobBlocked(1, 0, 10*time.Second),
				withEvent(bobBlocked(2, 0, 10*time.Second), func(e *Event) { e.Port = 587 }),
				withEvent(bobBlocked(3, 0, 10*time.Second), func(e *Event) { e.Address = "192.0.2.26" }),
				withEvent(bobBlocked(4, 0, 10*time.Second), func(e *Event) { e.UID, e.User = 1004, "dave" }),
			}},
			// Within a minute rows are ordered by uid, destination, port.
			want: []Event{
				bobBlocked(1, 0, 10*time.Second),
				withEvent(bobBlocked(2, 0, 10*time.Second), func(e *Event) { e.Port = 587 }),
				withEvent(bobBlocked(3, 0, 10*time.Second), func(e *Event) { e.Address = "192.0.2.26" }),
				withEvent(bobBlocked(4, 0, 10*time.Second), func(e *Event) { e.UID, e.User = 1004, "dave" }),
			},
		},
		{
			name: "IPv6 destination and uid without account",
			batches: [][]Event{{
				{UID: 4242, Family: 6, Address: "2001:db8::25", Port: 465, Action: "logged", Count: 9, FirstSeen: eventAt(time.Second), LastSeen: eventAt(59 * time.Second)},
			}},
			want: []Event{
				{UID: 4242, Family: 6, Address: "2001:db8::25", Port: 465, Action: "logged", Count: 9, FirstSeen: eventAt(time.Second), LastSeen: eventAt(59 * time.Second)},
			},
		},
		{
			name: "renamed user shows the latest name",
			batches: [][]Event{
				{bobBlocked(1, 10*time.Second, 10*time.Second)},
				{withEvent(bobBlocked(1, 20*time.Second, 20*time.Second), func(e *Event) { e.User = "robert" })},
			},
			want: []Event{withEvent(bobBlocked(2, 10*time.Second, 20*time.Second), func(e *Event) { e.User = "robert" })},
		},
		{
			name:    "empty batch",
			batches: [][]Event{{}, nil},
			want:    nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s, _ := newTestStore(t)
			for i, batch := range tt.batches {
				if err := s.RecordEvents(ctx, batch); err != nil {
					t.Fatalf("RecordEvents(batch %d) = %v", i, err)
				}
			}
			got, err := s.Events(ctx, EventFilter{})
			if err != nil {
				t.Fatalf("Events() = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Events() after %d batches mismatch (-want +got):\n%s", len(tt.batches), diff)
			}
			if err := s.IntegrityCheck(ctx); err != nil {
				t.Errorf("IntegrityCheck() = %v", err)
			}
		})
	}
}

func TestEventsFilters(t *testing.T) {
	ctx := t.Context()
	s, _ := newTestStore(t)
	// Four aggregates last seen at minute 0, 1, 2 and 3, told apart by port.
	var batch []Event
	for i, port := range []uint16{25, 465, 587, 2525} {
		d := time.Duration(i) * time.Minute
		batch = append(batch, withEvent(bobBlocked(1, d, d+30*time.Second), func(e *Event) { e.Port = port }))
	}
	if err := s.RecordEvents(ctx, batch); err != nil {
		t.Fatalf("RecordEvents() = %v", err)
	}
	tests := []struct {
		name   string
		filter EventFilter
		want   []uint16
	}{
		{name: "everything, most recent first", filter: EventFilter{}, want: []uint16{2525, 587, 465, 25}},
		{name: "limit", filter: EventFilter{Limit: 2}, want: []uint16{2525, 587}},
		{name: "negative limit means none", filter: EventFilter{Limit: -1}, want: []uint16{2525, 587, 465, 25}},
		{name: "since is inclusive on last seen", filter: EventFilter{Since: eventAt(time.Minute + 30*time.Second)}, want: []uint16{2525, 587, 465}},
		{name: "since just after a last seen", filter: EventFilter{Since: eventAt(time.Minute + 30*time.Second + time.Millisecond)}, want: []uint16{2525, 587}},
		{name: "since matches last seen, not first seen", filter: EventFilter{Since: eventAt(3*time.Minute + 10*time.Second)}, want: []uint16{2525}},
		{name: "since and limit", filter: EventFilter{Since: eventAt(0), Limit: 3}, want: []uint16{2525, 587, 465}},
		{name: "since after everything", filter: EventFilter{Since: eventAt(time.Hour)}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := s.Events(ctx, tt.filter)
			if err != nil {
				t.Fatalf("Events(%+v) = %v", tt.filter, err)
			}
			var got []uint16
			for _, e := range evs {
				got = append(got, e.Port)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Events(%+v) ports (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
}

// TestConcurrentEventWriters: the daemon's flush and a second process record
// the same aggregate at once; no attempt may be lost or fail with SQLITE_BUSY.
func TestConcurrentEventWriters(t *testing.T) {
	ctx := t.Context()
	a, path := newTestStore(t)
	b := openAt(t, path)
	const goroutinesPerHandle, batches = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutinesPerHandle*batches)
	for _, s := range []*Store{a, b} {
		for range goroutinesPerHandle {
			wg.Go(func() {
				for i := range batches {
					d := time.Duration(i) * time.Second
					if err := s.RecordEvents(ctx, []Event{bobBlocked(1, d, d)}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent RecordEvents: %v", err)
	}
	got, err := a.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatalf("Events() = %v", err)
	}
	want := []Event{bobBlocked(2*goroutinesPerHandle*batches, 0, (batches-1)*time.Second)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Events() after concurrent recording mismatch (-want +got):\n%s", diff)
	}
}

// An aggregate keeps the last process seen making it; one that knows no
// process (nft) leaves it alone, and the key stays per uid, destination,
// port and minute whatever the pid.
func TestRecordEventsKeepsTheLastProcess(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	cron := Process{PID: 4242, Comm: "perl", Exe: "/usr/bin/perl", Cmdline: "/usr/bin/perl /home/bob/send.pl",
		Cwd: "/home/bob", Cgroup: "/system.slice/cron.service", Unit: "cron.service"}
	fpm := Process{PID: 777, Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cmdline: "php-fpm: pool bob",
		Cwd: "/", Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service", Pool: "bob"}
	batches := [][]Event{
		{withEvent(bobBlocked(1, 1*time.Second, 1*time.Second), func(e *Event) { e.Process = cron })},
		{bobBlocked(2, 2*time.Second, 3*time.Second)}, // nothing known: kept
		{withEvent(bobBlocked(1, 5*time.Second, 5*time.Second), func(e *Event) { e.Process = fpm })},
		{withEvent(bobBlocked(1, 4*time.Second, 4*time.Second), func(e *Event) { e.Process = cron })}, // older: kept
	}
	for i, b := range batches {
		if err := s.RecordEvents(ctx, b); err != nil {
			t.Fatalf("RecordEvents(batch %d) = %v", i, err)
		}
	}
	got, err := s.Events(ctx, EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{withEvent(bobBlocked(5, 1*time.Second, 5*time.Second), func(e *Event) { e.Process = fpm })}
	if diff := cmp.Diff(want, got, cmpopts.EquateApproxTime(time.Millisecond)); diff != "" {
		t.Errorf("Events() (-want +got):\n%s", diff)
	}
}
