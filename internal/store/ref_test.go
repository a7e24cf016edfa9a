package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The explain responder's record carries the reference and the process but
// no count (the kernel's event counts the attempt): merged in either order
// with the kernel's, the aggregate has the kernel's count, the process and
// the reference, and the reference finds it.
func TestExplainedReferenceMerges(t *testing.T) {
	kernel := Event{UID: 1002, User: "bob", Family: 4, Address: "192.0.2.25", Port: 25, Action: "explained",
		Count: 1, FirstSeen: eventAt(10 * time.Second), LastSeen: eventAt(10 * time.Second)}
	responder := withEvent(kernel, func(e *Event) {
		e.Count, e.Ref = 0, "sg-0123456789"
		e.FirstSeen, e.LastSeen = eventAt(11*time.Second), eventAt(11*time.Second)
		e.Process = Process{PID: 4242, Comm: "swaks", Cmdline: "/usr/bin/perl /usr/bin/swaks --server 192.0.2.25"}
	})
	want := withEvent(kernel, func(e *Event) {
		e.Ref, e.LastSeen, e.Process = responder.Ref, responder.LastSeen, responder.Process
	})
	for name, order := range map[string][][]Event{
		"kernel first":    {{kernel}, {responder}},
		"responder first": {{responder}, {kernel}},
		"one batch":       {{responder, kernel}},
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := newTestStore(t)
			ctx := context.Background()
			for _, b := range order {
				if err := s.RecordEvents(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Events(ctx, EventFilter{Ref: responder.Ref})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]Event{want}, got); diff != "" {
				t.Errorf("events with the reference (-want +got):\n%s", diff)
			}
			if got, _ := s.Events(ctx, EventFilter{Ref: "sg-ffffffffff"}); len(got) != 0 {
				t.Errorf("an unknown reference found %v", got)
			}
			// A later kernel event without a reference keeps it.
			if err := s.RecordEvents(ctx, []Event{withEvent(kernel, func(e *Event) { e.LastSeen = eventAt(20 * time.Second) })}); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.Events(ctx, EventFilter{Ref: responder.Ref}); len(got) != 1 || got[0].Count != 2 || got[0].PID != 4242 {
				t.Errorf("after a second kernel event: %+v, want count 2, the reference and the process kept", got)
			}
		})
	}
}
