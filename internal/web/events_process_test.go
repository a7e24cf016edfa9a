package web

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

const webDockerID = "3f2a9c1b7d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"

// seedProcessEvents stores an attempt whose process is known, with a
// command line a hostile user chose, one from a container, and one as the
// nft backend records it, knowing nothing of the process.
func seedProcessEvents(t *testing.T, e *testEnv) {
	t.Helper()
	at := e.clock.Now().Add(-time.Hour)
	ev := func(addr string, p store.Process) store.Event {
		return store.Event{UID: 1001, User: "alice", Family: 4, Address: addr, Port: 25, Action: "blocked", Count: 2, FirstSeen: at, LastSeen: at, Process: p}
	}
	if err := e.raw.RecordEvents(context.Background(), []store.Event{
		ev("192.0.2.31", store.Process{PID: 4242, Comm: "=cmd|' /C calc'!A0", Exe: "/usr/bin/php8.2",
			Cmdline: "php /home/alice/public_html/<script>alert(1)</script>.php", Cwd: "/home/alice/public_html",
			Cgroup: "/system.slice/cron.service", Unit: "cron.service"}),
		ev("192.0.2.32", store.Process{PID: 3001, Comm: "sendmail", Exe: "/usr/sbin/sendmail", Cmdline: "sendmail -t",
			Cgroup: "/system.slice/docker-" + webDockerID + ".scope", Unit: "docker-" + webDockerID + ".scope", Container: webDockerID}),
		ev("192.0.2.33", store.Process{}),
	}); err != nil {
		t.Fatal(err)
	}
}

// rowOf is the table row of the blocked attempts page showing addr.
func rowOf(t *testing.T, body, addr string) string {
	t.Helper()
	for _, r := range strings.Split(body, "<tr>\n")[1:] {
		if strings.Contains(r, "<td>"+addr+"</td>") {
			return r[:strings.Index(r, "</tr>")]
		}
	}
	t.Fatalf("no row of %s on the page:\n%s", addr, body)
	return ""
}

// The page names the process and its source for an attempt that has them,
// with every detail escaped, and a dash for one that has not.
func TestEventsPageShowsProcessAndSource(t *testing.T) {
	e := newTestEnv(t)
	seedProcessEvents(t, e)
	cookie := e.login("admin", adminPassword)
	w := e.do(req{method: "GET", path: "/events", cookie: cookie})
	if w.Code != http.StatusOK {
		t.Fatalf("GET /events = %d", w.Code)
	}
	body := w.Body.String()
	if strings.Contains(body, "<script>alert(1)") {
		t.Fatal("a process's command line reached the page unescaped")
	}
	if !strings.Contains(body, "<th>Process</th>") {
		t.Error("the table has no Process column")
	}
	row := rowOf(t, body, "192.0.2.31")
	for _, want := range []string{
		`<code class="proc-label">=cmd|&#39; /C calc&#39;!A0[4242]</code>`,
		`<span class="proc-source" title="/home/alice/public_html/&lt;script&gt;alert(1)&lt;/script&gt;.php">/home/alice/public_html/&lt;script&gt;alert(1)&lt;/script&gt;.php</span>`,
		`<dt>executable</dt><dd><code>/usr/bin/php8.2</code></dd>`,
		`<dt>command line</dt><dd><code>php /home/alice/public_html/&lt;script&gt;alert(1)&lt;/script&gt;.php</code></dd>`,
		`<dt>working directory</dt><dd><code>/home/alice/public_html</code></dd>`,
		`<dt>cgroup</dt><dd><code>/system.slice/cron.service</code></dd>`,
		`<dt>unit</dt><dd><a href="/events?since=24h&amp;unit=cron.service">cron.service</a></dd>`,
	} {
		if !strings.Contains(row, want) {
			t.Errorf("the row of a known process lacks %s:\n%s", want, row)
		}
	}
	row = rowOf(t, body, "192.0.2.32")
	for _, want := range []string{`<code class="proc-label">sendmail[3001]</code>`, `<span class="proc-source" title="container 3f2a9c1b7d4e">container 3f2a9c1b7d4e</span>`,
		`<dt>container</dt><dd><a href="/events?container=` + webDockerID + `&amp;since=24h">` + webDockerID + `</a></dd>`} {
		if !strings.Contains(row, want) {
			t.Errorf("the row of a container's process lacks %s:\n%s", want, row)
		}
	}
	row = rowOf(t, body, "192.0.2.33")
	if !strings.Contains(row, `<td class="proc"><span class="muted" title="the backend does not report processes">—</span></td>`) || strings.Contains(row, "<details>") {
		t.Errorf("the row of an unknown process wants a dash and no details:\n%s", row)
	}
}

// The page and the API filter by unit and by the start of a container id.
func TestEventsFilterByUnitAndContainer(t *testing.T) {
	e := newTestEnv(t)
	seedProcessEvents(t, e)
	cookie := e.login("admin", adminPassword)
	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"unit=cron.service", []string{"192.0.2.31"}},
		{"container=" + webDockerID[:12], []string{"192.0.2.32"}},
		{"unit=cron", nil},
	} {
		body := e.do(req{method: "GET", path: "/events?" + tt.query, cookie: cookie}).Body.String()
		var shown []string
		for _, addr := range []string{"192.0.2.31", "192.0.2.32", "192.0.2.33"} {
			if strings.Contains(body, "<td>"+addr+"</td>") {
				shown = append(shown, addr)
			}
		}
		if diff := cmp.Diff(tt.want, shown); diff != "" {
			t.Errorf("/events?%s rows (-want +got):\n%s", tt.query, diff)
		}
		if !strings.Contains(body, `id="unit" value="`) || !strings.Contains(body, `id="container" value="`) {
			t.Errorf("/events?%s: no unit and container filters", tt.query)
		}
		var evs []store.Event
		w := e.do(req{method: "GET", path: "/api/v1/events?" + tt.query, bearer: e.tokens["ci"]})
		if err := json.Unmarshal(w.Body.Bytes(), &evs); err != nil {
			t.Fatalf("GET /api/v1/events?%s = %d %s", tt.query, w.Code, w.Body.String())
		}
		var got []string
		for _, ev := range evs {
			got = append(got, ev.Address)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("/api/v1/events?%s (-want +got):\n%s", tt.query, diff)
		}
	}
}

// The CSV export carries the process columns after the old ones, with a
// process's formula-like text defused; the JSON export carries the fields.
func TestEventsExportCarriesProcess(t *testing.T) {
	e := newTestEnv(t)
	seedProcessEvents(t, e)
	w := e.do(req{method: "GET", path: "/api/v1/events/export?format=csv", bearer: e.tokens["ci"]})
	recs, err := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
	if err != nil || len(recs) != 4 {
		t.Fatalf("CSV export = %d, %v:\n%s", w.Code, err, w.Body.String())
	}
	wantHeader := []string{"last_seen", "first_seen", "uid", "user", "destination", "port", "action", "count", "folded", "blocked_by",
		"pid", "comm", "exe", "cmdline", "cwd", "cgroup", "unit", "container", "pool", "source"}
	if diff := cmp.Diff(wantHeader, recs[0]); diff != "" {
		t.Errorf("CSV header (-want +got):\n%s", diff)
	}
	byAddr := map[string][]string{}
	for _, r := range recs[1:] {
		byAddr[r[4]] = r[10:]
	}
	want := map[string][]string{
		"192.0.2.31": {"4242", "'=cmd|' /C calc'!A0", "/usr/bin/php8.2", "php /home/alice/public_html/<script>alert(1)</script>.php",
			"/home/alice/public_html", "/system.slice/cron.service", "cron.service", "", "", "/home/alice/public_html/<script>alert(1)</script>.php"},
		"192.0.2.32": {"3001", "sendmail", "/usr/sbin/sendmail", "sendmail -t", "", "/system.slice/docker-" + webDockerID + ".scope",
			"docker-" + webDockerID + ".scope", webDockerID, "", "container 3f2a9c1b7d4e"},
		"192.0.2.33": {"0", "", "", "", "", "", "", "", "", ""},
	}
	if diff := cmp.Diff(want, byAddr); diff != "" {
		t.Errorf("CSV process columns (-want +got):\n%s", diff)
	}
	jw := e.do(req{method: "GET", path: "/api/v1/events/export?format=json", bearer: e.tokens["ci"]})
	var rows []map[string]any
	if err := json.Unmarshal(jw.Body.Bytes(), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("JSON export: %v, %d rows", err, len(rows))
	}
	for _, r := range rows {
		for _, k := range []string{"pid", "comm", "exe", "cmdline", "cwd", "cgroup", "unit", "container", "pool"} {
			if _, ok := r[k]; !ok {
				t.Errorf("JSON export row of %v lacks %q", r["destination"], k)
			}
		}
		if r["destination"] == "192.0.2.31" && (r["comm"] != "=cmd|' /C calc'!A0" || r["pid"] != float64(4242)) {
			t.Errorf("JSON export keeps the process as recorded, got %v", r)
		}
	}
}
