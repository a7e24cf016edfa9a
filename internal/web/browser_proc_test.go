package web

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// In a real Chromium: the Process column of the blocked attempts page keeps
// long command lines, paths and container ids within its width, with every
// details disclosure open, at phone and desktop widths, and the page never
// scrolls sideways.
func TestBrowserEventsProcessColumnFits(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	b.login(ts.URL, "admin", adminPassword)
	b.waitText("#state", "Enforcing")
	type fit struct {
		Scroll, Inner, Cells, Open, Sources int
		Widest, TableW, CardW               float64
	}
	const measure = `(() => {
		const ds = document.querySelectorAll("td.proc details");
		ds.forEach(d => d.open = true);
		let widest = 0;
		const cells = document.querySelectorAll("td.proc");
		for (const td of cells) widest = Math.max(widest, td.getBoundingClientRect().width);
		const table = document.querySelector("#events"), card = table.closest(".card");
		return {Scroll: document.documentElement.scrollWidth, Inner: innerWidth, Cells: cells.length, Open: ds.length,
			Sources: document.querySelectorAll("td.proc .proc-source").length,
			Widest: widest, TableW: table.getBoundingClientRect().width, CardW: card.getBoundingClientRect().width};
	})()`
	for _, width := range []int64{360, 390, 1280} {
		var got fit
		b.run(fmt.Sprintf("%d px viewport", width), chromedp.EmulateViewport(width, 900))
		b.run("open /events", chromedp.Navigate(ts.URL+"/events?since=30d"), chromedp.WaitVisible("#events", chromedp.ByQuery),
			chromedp.Evaluate(measure, &got))
		if got.Cells != 60 || got.Open != 30 || got.Sources != 30 {
			t.Errorf("%d px: %d process cells, %d with details, %d with a source; want 60, 30, 30", width, got.Cells, got.Open, got.Sources)
		}
		t.Logf("%d px: table %.0f card %.0f widest %.0f", width, got.TableW, got.CardW, got.Widest)
		if got.Scroll > got.Inner {
			t.Errorf("%d px: /events with the process details open is %d px wide, scrolls sideways", width, got.Scroll)
		}
		// 22rem plus the cell's padding: a command line wraps, it does not widen the column.
		if got.Widest > 22*16+20 {
			t.Errorf("%d px: the widest process cell is %.0f px, want at most 22rem", width, got.Widest)
		}
		// The table's first rows, one disclosure open, not the whole page
		// (tens of thousands of pixels tall with every disclosure open).
		var png []byte
		b.run("screenshot the table", chromedp.Evaluate(`document.querySelectorAll("td.proc details").forEach((d, i) => d.open = i == 0)`, nil),
			chromedp.Evaluate(`document.querySelector("#events").scrollIntoView({block: "start"})`, nil), chromedp.CaptureScreenshot(&png))
		if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("14-events-process-%d.png", width)), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
