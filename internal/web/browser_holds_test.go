package web

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// TestBrowserReleaseHold: in a real Chromium, an administrator sees a held
// user on the status page (without sideways scrolling on a phone), presses
// Release, is asked first (no script), confirms, and is told; the card is
// gone and the user's allowance is back.
func TestBrowserReleaseHold(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ctx := context.Background()
	if _, err := e.eng.Hold(ctx, setup, engine.HoldRequest{User: "bob", Reason: "42 refused attempts to a-very-long-smtp-relay-host-name.customer-mail.example.test"}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL
	b.login(base, "admin", adminPassword)
	b.waitText("#held-users", "42 refused attempts")
	for _, width := range []int64{390, 360} {
		var sw, iw int
		b.run("measure the status page", chromedp.EmulateViewport(width, 800), chromedp.Navigate(base+"/"), chromedp.WaitVisible("#held-users", chromedp.ByQuery),
			chromedp.Evaluate(`document.documentElement.scrollWidth`, &sw), chromedp.Evaluate(`innerWidth`, &iw))
		if sw > iw {
			t.Errorf("the status page with a hold scrolls sideways at %d px: %d > %d", width, sw, iw)
		}
	}
	b.shot("17-held")
	b.run("press Release on the allowed page", chromedp.Navigate(base+"/allowed"), chromedp.WaitVisible("#held-users", chromedp.ByQuery),
		chromedp.Click(`button[aria-label="Release bob (uid 1002)"]`, chromedp.ByQuery))
	b.waitText("#question", "Release user bob (uid 1002)?")
	if held, _ := e.eng.Holds(ctx); len(held) != 1 {
		t.Fatal("bob was released before the question was answered")
	}
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery))
	b.waitText("#flash", "user bob (uid 1002) released")
	var cards int
	b.run("count hold cards", chromedp.Evaluate(`document.querySelectorAll("#held-users").length`, &cards))
	if cards != 0 {
		t.Error("the allowed page still shows the hold after the release")
	}
	if held, _ := e.eng.Holds(ctx); len(held) != 0 {
		t.Errorf("holds after the confirmed release = %+v", held)
	}
}
