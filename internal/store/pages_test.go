package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// eventID names one stored aggregate for the page tests.
func eventID(e Event) string {
	return fmt.Sprintf("%d %s %d %s %d", e.UID, e.Address, e.Port, e.Action, e.FirstSeen.Unix()/60)
}

// Following Next visits every row that existed when paging began exactly
// once, even while new rows arrive and existing ones are updated between
// pages (issue 12, hole 6: list endpoints had no cap and no pages).
func TestEventsPagesVisitEveryRowOnce(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	ev := func(minute, i int) Event {
		at := eventAt(time.Duration(minute)*time.Minute + time.Duration(i%50)*time.Second)
		return Event{UID: uint32(1000 + i%7), User: "u", Family: 4, Address: fmt.Sprintf("192.0.2.%d", i%250), Port: 25,
			Action: "blocked", Count: 1, FirstSeen: at, LastSeen: at}
	}
	var batch []Event
	for minute := range 5 {
		for i := range 50 {
			batch = append(batch, ev(minute, i))
		}
	}
	if err := s.RecordEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, e := range batch {
		want[eventID(e)] = true
	}
	seen := map[string]int{}
	f := EventFilter{Limit: 7}
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("more than 100 pages of 7 for 250 rows")
		}
		evs, next, err := s.EventsPage(ctx, f)
		if err != nil {
			t.Fatalf("EventsPage(page %d) = %v", page, err)
		}
		if len(evs) > f.Limit {
			t.Fatalf("page %d has %d rows, limit %d", page, len(evs), f.Limit)
		}
		for _, e := range evs {
			seen[eventID(e)]++
		}
		// Between pages: a newer minute gets rows, an old row is seen again.
		again := batch[(page*37)%len(batch)]
		again.LastSeen = again.LastSeen.Add(5 * time.Second)
		if err := s.RecordEvents(ctx, []Event{ev(9, page), again}); err != nil {
			t.Fatal(err)
		}
		if next == "" {
			break
		}
		f.After = next
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("row %s returned %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if !want[id] && n > 1 {
			t.Errorf("new row %s returned %d times", id, n)
		}
	}
}

func TestAuditPagesVisitEveryRecordOnce(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	add := func(op string) {
		t.Helper()
		if err := s.AppendAudit(ctx, AuditRecord{At: time.Now(), Actor: "root", Source: "cli", Operation: op, Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 23 {
		add(fmt.Sprintf("old %d", i))
	}
	var got []string
	f := AuditFilter{Limit: 5}
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("more than 10 pages of 5 for 23 records")
		}
		recs, next, err := s.AuditPage(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, r.Operation)
		}
		add(fmt.Sprintf("new %d", page)) // newer than every page: never in one
		if next == "" {
			break
		}
		f.After = next
	}
	var want []string
	for i := 22; i >= 0; i-- {
		want = append(want, fmt.Sprintf("old %d", i))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit pages (-want +got):\n%s", diff)
	}
}

func TestPagesRefuseForeignCursors(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	for _, c := range []string{"x", "!!!", "eyJ6IjoxfQ"} { // junk, bad base64, {"z":1}
		if _, _, err := s.EventsPage(ctx, EventFilter{Limit: 1, After: c}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("EventsPage(After %q) = %v, want ErrBadCursor", c, err)
		}
		if _, _, err := s.AuditPage(ctx, AuditFilter{Limit: 1, After: c}); !errors.Is(err, ErrBadCursor) {
			t.Errorf("AuditPage(After %q) = %v, want ErrBadCursor", c, err)
		}
	}
}

func TestAllowedPagesVisitEveryEntryOnce(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := t.Context()
	p := policy.Default()
	p.Users = numberedUsers(25)
	for i := range 5 {
		p.Groups = append(p.Groups, policy.Principal{Kind: policy.KindGroup, ID: uint32(3000 + i), ByID: true})
	}
	for i := range 3 {
		p.Exceptions = append(p.Exceptions, policy.Exception{Principal: p.Users[i], Destination: fmt.Sprintf("192.0.2.%d/32", i)})
	}
	putPolicy(t, s, p, time.Now(), "test")
	want := map[string]bool{}
	for _, pr := range append(slices.Clone(p.Users), p.Groups...) {
		want[pr.String()] = true
	}
	for _, e := range p.Exceptions {
		want[e.String()] = true
	}
	for _, limit := range []int{1, 7, 30, 33, 34, 1000} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			seen := map[string]int{}
			cur := p.Clone()
			after := ""
			for page := 0; ; page++ {
				if page > 50 {
					t.Fatal("more than 50 pages")
				}
				got, next, err := s.AllowedPage(ctx, after, limit)
				if err != nil {
					t.Fatalf("AllowedPage(%q, %d) = %v", after, limit, err)
				}
				if n := len(got.Users) + len(got.Groups) + len(got.Exceptions); n > limit {
					t.Fatalf("page %d has %d entries, limit %d", page, n, limit)
				}
				for _, pr := range append(got.Users, got.Groups...) {
					seen[pr.String()]++
				}
				for _, e := range got.Exceptions {
					seen[e.String()]++
				}
				if page < 5 { // between the first pages someone allows another user
					cur.Users = append(cur.Users, policy.Principal{Kind: policy.KindUser, ID: uint32(50000 + page), ByID: true})
					putPolicy(t, s, cur, time.Now(), "test")
				}
				if next == "" {
					break
				}
				after = next
			}
			for id := range want {
				if seen[id] != 1 {
					t.Errorf("%s listed %d times, want once", id, seen[id])
				}
			}
			for id, n := range seen {
				if n > 1 {
					t.Errorf("%s listed %d times", id, n)
				}
			}
			putPolicy(t, s, p, time.Now(), "test")
		})
	}
}
