package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// fitsPhone fails the test when the page open in b scrolls sideways at the
// widths a phone has.
func fitsPhone(t *testing.T, b *browser, what string, open chromedp.Action) {
	t.Helper()
	for _, width := range []int64{390, 360} {
		var sw, iw int
		b.run(fmt.Sprintf("measure %s at %d px", what, width), chromedp.EmulateViewport(width, 800), open,
			chromedp.Evaluate(`document.documentElement.scrollWidth`, &sw), chromedp.Evaluate(`innerWidth`, &iw))
		if sw > iw {
			t.Errorf("%s scrolls sideways at %d px: %d > %d", what, width, sw, iw)
		}
	}
	b.run("back to a desktop", chromedp.EmulateViewport(1280, 900))
}

// TestBrowserSettingsLimitsAndHolds: in a real Chromium an administrator
// types a wrong hold-after, is told what is wrong with what was typed kept,
// corrects it and saves the rate limit and hold settings; the page then
// shows them. Nothing needs a script, and no state of the page scrolls
// sideways on a phone.
func TestBrowserSettingsLimitsAndHolds(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL
	ctx := context.Background()
	b.login(base, "admin", adminPassword)
	b.waitText("#state", "Enforcing")

	open := chromedp.Tasks{chromedp.Navigate(base + "/settings"), chromedp.WaitVisible("#hold_for", chromedp.ByQuery)}
	fitsPhone(t, b, "the settings page", open)
	b.run("type the limits, one wrong", open, fill("#rate_limit", "100/h"), fill("#hold_after", "10/fortnight"), fill("#hold_for", "0"),
		chromedp.Click("#save", chromedp.ByQuery))
	b.waitText("#error", `hold-after: invalid rate "10/fortnight": the period must be s, m, h or d (e.g. 100/h)`)
	var kept string
	b.run("read the kept value", chromedp.Value("#hold_after", &kept, chromedp.ByQuery))
	if kept != "10/fortnight" {
		t.Errorf("after the error the hold-after field holds %q, want what was typed", kept)
	}
	if hs, _ := e.eng.HoldSettings(ctx); !hs.After.IsZero() {
		t.Errorf("a wrong hold-after was saved: %+v", hs)
	}
	if p, _, _ := e.st.Policy(ctx); !p.RateLimit.IsZero() {
		t.Errorf("the rate limit was saved with a wrong hold-after: %v", p.RateLimit)
	}
	fitsPhone(t, b, "the settings page with an error", chromedp.WaitVisible("#error", chromedp.ByQuery))
	b.shot("18-settings-error")

	b.run("correct and save", fill("#hold_after", "10/m"), chromedp.Click("#save", chromedp.ByQuery))
	b.waitText("#flash", "default rate limit set to 100/h")
	b.waitText("#flash", "holds last until released")
	var rate, after, holdFor string
	b.run("read the saved values", chromedp.Value("#rate_limit", &rate, chromedp.ByQuery), chromedp.Value("#hold_after", &after, chromedp.ByQuery),
		chromedp.Value("#hold_for", &holdFor, chromedp.ByQuery))
	if rate != "100/h" || after != "10/m" || holdFor != "0" {
		t.Errorf("after the save the fields say %q %q %q, want 100/h 10/m 0", rate, after, holdFor)
	}
	hs, _ := e.eng.HoldSettings(ctx)
	if hs.After != (policy.Rate{Count: 10, Period: time.Minute}) || hs.For != 0 {
		t.Errorf("stored hold settings = %+v, want 10/m until released", hs)
	}
	b.shot("19-settings-limits")
}

// TestBrowserHoldFromTheAllowedPage: an administrator puts a user on hold
// from the allowed page with a length and a reason, is asked first (no
// script), confirms, and sees the hold listed with a Release button; the
// form and the confirmation fit a phone.
func TestBrowserHoldFromTheAllowedPage(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL
	ctx := context.Background()
	b.login(base, "admin", adminPassword)
	b.waitText("#state", "Enforcing")

	open := chromedp.Tasks{chromedp.Navigate(base + "/allowed"), chromedp.WaitVisible("#hold-form", chromedp.ByQuery)}
	fitsPhone(t, b, "the allowed page with the hold form", open)
	b.run("ask for a wrong length", open, fill("#hold-user", "carol"), fill("#hold-for", "a while"), chromedp.Click("#hold-button", chromedp.ByQuery))
	b.waitText("#error", `for: invalid duration "a while"`)
	b.run("hold carol for 2h", fill("#hold-for", "2h"), fill("#hold-reason", "phishing kit in wp-content/uploads"), chromedp.Click("#hold-button", chromedp.ByQuery))
	b.waitText("#question", "Put user carol (uid 1003) on hold for 2h?")
	if held, _ := e.eng.Holds(ctx); len(held) != 0 {
		t.Fatal("carol was held before the question was answered")
	}
	fitsPhone(t, b, "the hold confirmation", chromedp.WaitVisible("#question", chromedp.ByQuery))
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery))
	b.waitText("#flash", "user carol (uid 1003) held until")
	b.waitText("#held-users", "phishing kit in wp-content/uploads")
	var release int
	b.run("find the Release button", chromedp.Evaluate(`document.querySelectorAll('button[aria-label="Release carol (uid 1003)"]').length`, &release))
	if release != 1 {
		t.Errorf("the held card has %d Release buttons for carol, want 1", release)
	}
	held, _ := e.eng.Holds(ctx)
	if len(held) != 1 || held[0].User != "carol" || held[0].By != "web:admin" || held[0].Until == nil || held[0].Until.Sub(held[0].Since) != 2*time.Hour {
		t.Errorf("holds after the confirmed hold = %+v", held)
	}
	fitsPhone(t, b, "the allowed page with a hold", open)
	b.shot("20-hold-form")
}
