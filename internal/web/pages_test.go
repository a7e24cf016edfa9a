package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// recordEvents stores n aggregates by alice (a user res-bot may see), each
// its own destination, minutes apart going back from the clock.
func (e *testEnv) recordEvents(n, first int) {
	e.t.Helper()
	now := e.clock.Now()
	var batch []store.Event
	for i := range n {
		at := now.Add(-time.Duration(i%600) * time.Minute)
		batch = append(batch, store.Event{UID: 1001, User: "alice", Family: 6, Address: fmt.Sprintf("2001:db8::%x", first+i),
			Port: 25, Action: "blocked", Count: 1, FirstSeen: at, LastSeen: at})
	}
	if err := e.raw.RecordEvents(context.Background(), batch); err != nil {
		e.t.Fatal(err)
	}
}

// Every list of the API answers at most maxAPIPage rows, whatever limit asks
// for, with a cursor to the rest (issue 12, hole 6: ?limit=0 read the whole
// table into memory).
func TestAPIListsAreCappedWithACursor(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	e.recordEvents(maxAPIPage+300, 0)
	tx, err := e.raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxAPIPage + 10 {
		if err := tx.AppendAudit(ctx, store.AuditRecord{At: e.clock.Now(), Actor: "root", Source: "cli", Operation: fmt.Sprint("op ", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	p := policy.Default()
	for i := range maxAPIPage + 5 {
		p.Users = append(p.Users, policy.Principal{Kind: policy.KindUser, ID: uint32(20000 + i), ByID: true})
	}
	if _, err := tx.PutPolicy(ctx, p, e.clock.Now(), "root"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows := map[string]func(*testing.T, string) (int, string){
		"/api/v1/events": func(t *testing.T, path string) (int, string) {
			got := decodeEventsPage(t, e.do(req{method: "GET", path: path, bearer: e.tokens["res-bot"]}))
			return len(got.Events), got.Next
		},
		"/api/v1/audit": func(t *testing.T, path string) (int, string) {
			got := decodeAuditPage(t, e.do(req{method: "GET", path: path, bearer: e.tokens["ci"]}))
			return len(got.Audit), got.Next
		},
		"/api/v1/allowed": func(t *testing.T, path string) (int, string) {
			got := decode[allowedPage](t, e.do(req{method: "GET", path: path, bearer: e.tokens["ci"]}))
			return len(got.Users) + len(got.Groups) + len(got.Exceptions), got.Next
		},
	}
	for path, list := range rows {
		for _, query := range []string{"", "?limit=0", "?limit=1000000", "?limit=999999999"} {
			t.Run(path+query, func(t *testing.T) {
				n, next := list(t, path+query)
				if n != maxAPIPage || next == "" {
					t.Errorf("GET %s%s: %d rows, next %q; want %d and a cursor", path, query, n, next, maxAPIPage)
				}
			})
		}
		t.Run(path+" small limit", func(t *testing.T) {
			if n, next := list(t, path+"?limit=3"); n != 3 || next == "" {
				t.Errorf("GET %s?limit=3: %d rows, next %q; want 3 and a cursor", path, n, next)
			}
		})
		t.Run(path+" bad cursor", func(t *testing.T) {
			w := e.do(req{method: "GET", path: path + "?cursor=not-a-cursor", bearer: e.tokens["ci"]})
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "cursor") {
				t.Errorf("GET %s?cursor=not-a-cursor = %d %s, want 400 naming the cursor", path, w.Code, w.Body)
			}
		})
	}
}

// Following next returns every attempt exactly once, even while new ones
// are recorded between pages.
func TestAPIEventsCursorVisitsEveryRowOnce(t *testing.T) {
	e := newTestEnv(t)
	const n = 2500
	e.recordEvents(n, 0)
	seen := map[string]int{}
	path := "/api/v1/events?limit=0"
	for page := 0; ; page++ {
		if page > 10 {
			t.Fatal("more than 10 pages of 1000 for 2500 rows")
		}
		got := decodeEventsPage(t, e.do(req{method: "GET", path: path, bearer: e.tokens["res-bot"]}))
		for _, ev := range got.Events {
			seen[fmt.Sprint(ev.Address, " ", ev.LastSeen.Unix())]++
		}
		e.recordEvents(50, 100000+page*50) // new attempts arrive between pages
		if got.Next == "" {
			break
		}
		path = "/api/v1/events?limit=0&cursor=" + url.QueryEscape(got.Next)
	}
	for i := range n {
		at := e.clock.Now().Add(-time.Duration(i%600) * time.Minute)
		if k := fmt.Sprint(fmt.Sprintf("2001:db8::%x", i), " ", at.Unix()); seen[k] != 1 {
			t.Errorf("attempt %s returned %d times, want once", k, seen[k])
		}
	}
	for k, c := range seen {
		if c > 1 {
			t.Errorf("attempt %s returned %d times", k, c)
		}
	}
}

// The pages list a page at a time, with a link to the next.
func TestPagesListAPageWithALinkToTheNext(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	cookie := e.login("admin", adminPassword) // audited: counted in setUp
	e.recordEvents(eventsShown+20, 0)
	setUp, err := e.raw.Audit(ctx, store.AuditFilter{}) // the accounts and tokens newTestEnv made
	if err != nil {
		t.Fatal(err)
	}
	tx, err := e.raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range auditShown + 20 - len(setUp) {
		if err := tx.AppendAudit(ctx, store.AuditRecord{At: e.clock.Now(), Actor: "root", Source: "cli", Operation: fmt.Sprint("op-", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, row string
		want      int
	}{
		{"/events?since=24h", "<tr>\n      <td class=\"nowrap\">", eventsShown},
		{"/audit", "<tr>\n      <td class=\"nowrap\">", auditShown},
	} {
		body := e.do(req{method: "GET", path: tt.path, cookie: cookie}).Body.String()
		if n := strings.Count(body, tt.row); n != tt.want {
			t.Errorf("GET %s shows %d rows, want %d", tt.path, n, tt.want)
		}
		i := strings.Index(body, `id="older"`)
		if i < 0 {
			t.Fatalf("GET %s has no link to older rows", tt.path)
		}
		href := body[strings.LastIndex(body[:i], `href="`)+len(`href="`) : i-2]
		next := e.do(req{method: "GET", path: strings.ReplaceAll(href, "&amp;", "&"), cookie: cookie}).Body.String()
		if n := strings.Count(next, tt.row); n != 20 {
			t.Errorf("GET %s (the older page) shows %d rows, want 20", href, n)
		}
		if strings.Contains(next, `id="older"`) {
			t.Errorf("GET %s (the last page) links to an older one", href)
		}
	}
}

// The events page's chart and per-user table, summed by the store, say what
// summing the rows themselves says.
func TestEventSumsMatchTheRows(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	e.recordEvents(700, 0)
	now := e.clock.Now()
	if err := e.raw.RecordEvents(ctx, []store.Event{
		{UID: 1002, User: "bob", Family: 4, Address: "192.0.2.0/24", Port: 25, Action: "blocked", Count: 40, FirstSeen: now.Add(-3 * time.Hour), LastSeen: now.Add(-3 * time.Hour)},
		{UID: 1002, User: "bob", Family: 4, Address: "other", Port: 25, Action: "blocked", Count: 500, FirstSeen: now.Add(-2 * time.Hour), LastSeen: now.Add(-2 * time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	for _, window := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		f := store.EventFilter{Since: now.Add(-window)}
		evs, err := e.eng.Events(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		fr := frameFor(now, window)
		counts, users, err := e.eng.EventSums(ctx, f, fr.start, fr.size, fr.n, maxChartUsers)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(buildChart(evs, now, window), drawChart(fr, counts)); diff != "" {
			t.Errorf("window %v: chart from sums (-rows +sums):\n%s", window, diff)
		}
		if diff := cmp.Diff(engine.TotalsByUser(evs), users, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("window %v: per-user totals (-rows +sums):\n%s", window, diff)
		}
	}
}

// eventsPage and auditPage are one page of GET /api/v1/events or audit: the
// JSON array and the next page's cursor from the headers.
type eventsPage struct {
	Events []engine.EventView
	Next   string
}

type auditPage struct {
	Audit []store.AuditRecord
	Next  string
}

func decodeEventsPage(t *testing.T, w *httptest.ResponseRecorder) eventsPage {
	t.Helper()
	return eventsPage{decode[[]engine.EventView](t, w), nextOf(t, w)}
}

func decodeAuditPage(t *testing.T, w *httptest.ResponseRecorder) auditPage {
	t.Helper()
	return auditPage{decode[[]store.AuditRecord](t, w), nextOf(t, w)}
}

// nextOf reads the cursor and checks the Link header names the same page.
func nextOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	next := w.Header().Get("X-Next-Cursor")
	link := w.Header().Get("Link")
	if (next == "") != (link == "") || (next != "" && !strings.Contains(link, "cursor="+url.QueryEscape(next))) {
		t.Fatalf("X-Next-Cursor %q and Link %q disagree", next, link)
	}
	return next
}
