package web

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

// In a real Chromium: the blocked attempts filters, the prefix note, the
// "By user" link, pages that keep the filter, and the CSV export of every
// page through the link on the page (with the session cookie only).
func TestBrowserEventsFiltersAndExport(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedMany(t, e, 250) // 250 rows each for alice (port 25) and bob (port 587)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL
	b.login(base, "admin", adminPassword)
	b.waitText("main", "")

	b.run("open blocked attempts", chromedp.Navigate(base+"/events"), chromedp.WaitVisible("#filter", chromedp.ByQuery))
	b.run("filter by user prefix and port", fill("#user", "bo"), fill("#port", "587"),
		chromedp.SetValue("#sort", "count", chromedp.ByQuery), chromedp.Click("#filter button", chromedp.ByQuery))
	b.waitText("#user-help", `users whose name starts with “bo”`)
	var loc string
	b.run("read the location", chromedp.Location(&loc))
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if q := u.Query(); q.Get("user") != "bo" || q.Get("port") != "587" || q.Get("sort") != "count" {
		t.Errorf("filter submitted %s", loc)
	}
	var cells []*cdp.Node
	b.run("read the user column", chromedp.Nodes("#events tbody tr td:nth-child(2)", &cells, chromedp.ByQueryAll))
	if len(cells) != 200 {
		t.Errorf("first page has %d rows, want 200", len(cells))
	}
	var users string
	b.run("read the users shown", chromedp.Evaluate(`[...new Set([...document.querySelectorAll("#events tbody tr td:nth-child(2)")].map(td => td.textContent))].join(",")`, &users))
	if users != "bob" {
		t.Errorf("users shown for user=bo: %q, want bob", users)
	}
	var why string
	b.run("read why the first row was blocked", chromedp.Text("#events tbody tr:first-child td.why", &why, chromedp.ByQuery, chromedp.NodeVisible))
	if !strings.Contains(why, "bob is neither allowed nor has an exception") {
		t.Errorf("why column = %q", why)
	}
	b.shot("10-events-filtered")

	// The next page keeps the filter and shows the other 50 rows.
	b.run("go to the next page", chromedp.Click("#older", chromedp.ByQuery), chromedp.WaitVisible("#newest", chromedp.ByQuery))
	b.run("read the user column", chromedp.Nodes("#events tbody tr td:nth-child(2)", &cells, chromedp.ByQueryAll))
	b.run("read the location", chromedp.Location(&loc))
	if len(cells) != 50 || !strings.Contains(loc, "user=bo") || !strings.Contains(loc, "sort=count") {
		t.Errorf("next page: %d rows at %s, want 50 with the filter", len(cells), loc)
	}

	// Export every page of this filter as CSV through the page's own link.
	dir := t.TempDir()
	done := make(chan string, 1)
	chromedp.ListenTarget(b.ctx, func(ev any) {
		if p, ok := ev.(*cdpbrowser.EventDownloadProgress); ok && p.State == cdpbrowser.DownloadProgressStateCompleted {
			select {
			case done <- p.GUID:
			default:
			}
		}
	})
	var href string
	b.run("read the export link", chromedp.AttributeValue("#export-csv", "href", &href, nil, chromedp.ByQuery))
	b.run("download the CSV", cdpbrowser.SetDownloadBehavior(cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName).WithDownloadPath(dir).WithEventsEnabled(true),
		chromedp.Click("#export-csv", chromedp.ByQuery))
	var csvText string
	select {
	case guid := <-done:
		data, err := os.ReadFile(filepath.Join(dir, guid))
		if err != nil {
			t.Fatal(err)
		}
		csvText = string(data)
	case <-time.After(20 * time.Second):
		t.Fatal("the CSV download did not complete within 20s")
	}
	lines := strings.Split(strings.TrimSpace(csvText), "\n")
	if !strings.HasPrefix(lines[0], "last_seen,") || len(lines) != 251 || strings.Contains(csvText, ",alice,") {
		t.Errorf("export %s: %d lines (want header + 250), alice present %v", href, len(lines), strings.Contains(csvText, ",alice,"))
	}

	// "By user" links to that user's attempts.
	b.run("open every user", chromedp.Navigate(base+"/events"), chromedp.WaitVisible("#by-user", chromedp.ByQuery))
	b.run("follow alice's By user link", chromedp.Click(`#by-user a[href*="uid=1001"]`, chromedp.ByQuery), chromedp.WaitVisible("#all-users", chromedp.ByQuery))
	b.run("read the users shown", chromedp.Evaluate(`[...new Set([...document.querySelectorAll("#events tbody tr td:nth-child(2)")].map(td => td.textContent))].join(",")`, &users))
	if users != "alice" {
		t.Errorf("alice's By user link shows %q", users)
	}
	b.shot("11-events-by-user")
}
