package web

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// seedMany stores n attempts by alice (1001) and n by bob (1002), one per
// destination, within the last hour.
func seedMany(t *testing.T, e *testEnv, n int) {
	t.Helper()
	now := e.clock.Now()
	var evs []store.Event
	for i := range n {
		at := now.Add(-time.Duration(i%50) * time.Minute)
		addr := fmt.Sprintf("192.0.%d.%d", 2+i/250, i%250)
		evs = append(evs,
			store.Event{UID: 1001, User: "alice", Family: 4, Address: addr, Port: 25, Action: "blocked", Count: 1, FirstSeen: at, LastSeen: at},
			store.Event{UID: 1002, User: "bob", Family: 4, Address: addr, Port: 587, Action: "blocked", Count: 2, FirstSeen: at, LastSeen: at})
	}
	if err := e.raw.RecordEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// The export streams every row the filter matches, across store pages, and
// a reseller's export holds their own users only.
func TestEventsExportEveryPage(t *testing.T) {
	e := newTestEnv(t)
	seedMany(t, e, 1300) // 2600 rows: three store pages of exportPage
	tests := []struct {
		name, query, token string
		wantRows           int
		wantUsers          []string
	}{
		{"admin, everything", "", "ci", 2600, []string{"alice", "bob"}},
		{"admin, one user by prefix", "?user=bo", "ci", 1300, []string{"bob"}},
		{"admin, port and destination", "?port=25&destination=192.0.3.", "ci", 250, []string{"alice"}},
		{"reseller sees only owned users", "", "res-bot", 1300, []string{"alice"}},
		{"reseller cannot filter into others", "?user=bob", "res-bot", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sep := "?"
			if tt.query != "" {
				sep = "&"
			}
			w := e.do(req{method: "GET", path: "/api/v1/events/export" + tt.query + sep + "format=csv", bearer: e.tokens[tt.token]})
			if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") {
				t.Fatalf("export = %d %s:\n%s", w.Code, w.Header().Get("Content-Type"), w.Body.String())
			}
			if cd := w.Header().Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
				t.Errorf("Content-Disposition = %q, want an attachment", cd)
			}
			recs, err := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if recs[0][0] != "last_seen" || len(recs)-1 != tt.wantRows {
				t.Fatalf("CSV has header %v and %d rows, want %d rows", recs[0], len(recs)-1, tt.wantRows)
			}
			seen, users := map[string]bool{}, map[string]bool{}
			for _, r := range recs[1:] {
				key := strings.Join(r[2:7], " ")
				if seen[key] {
					t.Fatalf("row %s exported twice", key)
				}
				seen[key], users[r[3]] = true, true
			}
			var got []string
			for _, u := range []string{"alice", "bob"} {
				if users[u] {
					got = append(got, u)
				}
			}
			if diff := cmp.Diff(tt.wantUsers, got); diff != "" {
				t.Errorf("users exported (-want +got):\n%s", diff)
			}
			// JSON carries the same rows as one array.
			jw := e.do(req{method: "GET", path: "/api/v1/events/export" + tt.query + sep + "format=json", bearer: e.tokens[tt.token]})
			var evs []engine.EventView
			if err := json.Unmarshal(jw.Body.Bytes(), &evs); err != nil || len(evs) != tt.wantRows {
				t.Errorf("JSON export: %d rows, err %v, want %d", len(evs), err, tt.wantRows)
			}
		})
	}
	if w := e.do(req{method: "GET", path: "/api/v1/events/export?format=xml", bearer: e.tokens["ci"]}); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("format=xml = %d %s, want 400 with an error", w.Code, w.Body.String())
	}
}

// The page filters by user prefix (and says so), destination, port and
// action, sorts by count, pages without repeating rows while keeping the
// filter, and links "By user" rows to that user's attempts.
func TestEventsPageFiltersAndPages(t *testing.T) {
	e := newTestEnv(t)
	seedMany(t, e, 150) // 300 rows: two pages of 200
	cookie := e.login("admin", adminPassword)
	get := func(path string) string {
		t.Helper()
		w := e.do(req{method: "GET", path: path, cookie: cookie})
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s = %d:\n%s", path, w.Code, w.Body.String())
		}
		return w.Body.String()
	}
	body := get("/events?user=ali")
	if !strings.Contains(body, "users whose name starts with “ali”") {
		t.Error("the page does not say the user filter is a prefix")
	}
	if strings.Contains(body, "<td>bob</td>") || strings.Count(body, "<td>alice</td>") != 150 {
		t.Errorf("user=ali shows %d alice rows, bob %v", strings.Count(body, "<td>alice</td>"), strings.Contains(body, "<td>bob</td>"))
	}
	if got := strings.Count(get("/events?port=587&destination=192.0.2.1"), "<td>bob</td>"); got != 61 {
		t.Errorf("port=587&destination=192.0.2.1: %d rows, want 61 (192.0.2.1, .10–.19, .100–.149)", got)
	}
	if got := strings.Count(get("/events?action=logged"), `class="why"`); got != 0 {
		t.Errorf("action=logged: %d rows, want none", got)
	}
	// Sorted by count, bob's (2 each) come first.
	body = get("/events?sort=count")
	if a, b := strings.Index(body, "<td>alice</td>"), strings.Index(body, "<td>bob</td>"); !(b >= 0 && (a < 0 || b < a)) {
		t.Error("sort=count does not put the larger counts first")
	}
	// Two pages of all 300 rows, each row once, the filter kept in the link.
	seen := map[string]int{}
	path, pages := "/events?sort=count&since=24h", 0
	for path != "" {
		if pages++; pages > 3 {
			t.Fatal("more than 3 pages for 300 rows")
		}
		body = get(path)
		rows := strings.Split(body, "<tr>\n")[1:]
		for _, r := range rows {
			if strings.Contains(r, `class="why"`) {
				seen[r[:strings.Index(r, `<td class="why">`)]]++
			}
		}
		path = ""
		if i := strings.Index(body, `id="older"`); i >= 0 {
			href := body[strings.LastIndex(body[:i], `href="`)+6 : i-2]
			path = strings.ReplaceAll(href, "&amp;", "&")
			if !strings.Contains(path, "sort=count") {
				t.Errorf("next page link %q loses the sort", path)
			}
		}
	}
	if len(seen) != 300 || pages != 2 {
		t.Errorf("paging saw %d distinct rows in %d pages, want 300 in 2", len(seen), pages)
	}
	for r, n := range seen {
		if n != 1 {
			t.Errorf("row shown %d times: %s", n, r)
		}
	}
	// "By user" links to that user's attempts, exactly by uid.
	body = get("/events?since=24h")
	if !strings.Contains(body, `<a href="/events?since=24h&amp;uid=1002">bob</a>`) {
		t.Fatalf("By user has no link to bob's attempts:\n%s", body)
	}
	body = get("/events?since=24h&uid=1002")
	if strings.Contains(body, "<td>alice</td>") || !strings.Contains(body, "Only uid 1002") {
		t.Error("the By user link does not narrow the page to that uid")
	}
	if w := e.do(req{method: "GET", path: "/events?port=smtp", cookie: cookie}); w.Code != http.StatusBadRequest {
		t.Errorf("port=smtp = %d, want 400", w.Code)
	}
}

// "Allow this destination" returns to the same filtered view, where the rows
// the new exception covers no longer offer the button; why a row was blocked
// is in the row itself. A back address off the page is ignored.
func TestAllowDestinationReturnsToTheFilteredView(t *testing.T) {
	e := newTestEnv(t)
	now := e.clock.Now()
	if err := e.raw.RecordEvents(context.Background(), []store.Event{
		{UID: 1002, User: "bob", Family: 4, Address: "198.51.100.25", Port: 587, Action: "blocked", Count: 3, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)},
		{UID: 1002, User: "bob", Family: 4, Address: "198.51.100.25", Port: 25, Action: "blocked", Count: 1, FirstSeen: now.Add(-time.Hour), LastSeen: now.Add(-time.Hour)},
	}); err != nil {
		t.Fatal(err)
	}
	cookie := e.login("admin", adminPassword)
	view := "/events?destination=198.51.100.&since=24h&user=bo"
	body := e.do(req{method: "GET", path: view, cookie: cookie}).Body.String()
	if strings.Count(body, ">Allow this destination</button>") != 2 {
		t.Fatalf("want two allow buttons before:\n%s", body)
	}
	// The refusal's wording is the backend's own (Describe); the fake's here.
	if !regexp.MustCompile(`<td class="why">block rule \(mode reject\): [^<;]+; bob is neither allowed nor has an exception for 198\.51\.100\.25 port 587</td>`).MatchString(body) {
		t.Error("why the row was blocked is not in the row")
	}
	back := url.Values{"destination": {"198.51.100."}, "since": {"24h"}, "user": {"bo"}}.Encode()
	w := e.do(req{method: "POST", path: "/allowed", cookie: cookie, form: url.Values{
		"kind": {"user"}, "name": {"bob"}, "to": {"198.51.100.25"}, "ports": {"587"}, "back": {"/events?" + back}}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/events?"+back {
		t.Fatalf("POST /allowed = %d to %q, want 303 to /events?%s", w.Code, w.Header().Get("Location"), back)
	}
	body = e.do(req{method: "GET", path: w.Header().Get("Location"), cookie: cookie}).Body.String()
	if strings.Count(body, ">Allow this destination</button>") != 1 || strings.Count(body, "allowed now") != 1 {
		t.Errorf("after allowing port 587: want one button (port 25) and one row allowed now:\n%s", body)
	}
	for _, evil := range []string{"//evil.example/events", "https://evil.example/events", "/accounts", "/events\\@evil"} {
		w := e.do(req{method: "POST", path: "/allowed", cookie: cookie, form: url.Values{
			"kind": {"user"}, "name": {"carol"}, "to": {"198.51.100.26"}, "back": {evil}}})
		if loc := w.Header().Get("Location"); loc != "/allowed" {
			t.Errorf("back=%q redirected to %q, want /allowed", evil, loc)
		}
	}
}

// The audit log filters by who (a prefix) and operation, and pages keep the
// filter.
func TestAuditPageFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	for i := range 210 {
		if err := e.raw.AppendAudit(ctx, store.AuditRecord{At: e.clock.Now(), Actor: "web:alice", Source: "web", Operation: "allow", Detail: fmt.Sprintf("user u%d", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	cookie := e.login("admin", adminPassword)
	body := e.do(req{method: "GET", path: "/audit?actor=web:&operation=allow", cookie: cookie}).Body.String()
	if got := strings.Count(body, "<td>web:alice</td>"); got != 200 {
		t.Errorf("first page: %d rows, want 200", got)
	}
	if !strings.Contains(body, `href="/audit?actor=web%3A&amp;cursor=`) || !strings.Contains(body, "operation=allow") {
		t.Errorf("the next page link loses the filter")
	}
	body = e.do(req{method: "GET", path: "/audit?actor=test-setup", cookie: cookie}).Body.String()
	if strings.Contains(body, "web:alice") || !strings.Contains(body, "test-setup") {
		t.Error("actor=test-setup shows other actors' records")
	}
}

// The audit API takes the same filters as the page.
func TestAuditAPIFilters(t *testing.T) {
	e := newTestEnv(t)
	if err := e.raw.AppendAudit(context.Background(), store.AuditRecord{At: e.clock.Now(), Actor: "web:alice", Source: "web", Operation: "allow", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	recs := decode[[]store.AuditRecord](t, e.do(req{method: "GET", path: "/api/v1/audit?actor=web:&operation=allow", bearer: e.tokens["ci"]}))
	if len(recs) != 1 || recs[0].Actor != "web:alice" {
		t.Errorf("GET /api/v1/audit?actor=web:&operation=allow = %+v, want alice's one record", recs)
	}
}
