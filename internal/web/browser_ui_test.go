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

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Issue 16 in a real Chromium: what an administrator and a reseller see and
// do every day. findChromium (browser_test.go) skips without a browser, or
// fails under SMTPGUARD_PRIVILEGED_TESTS=1.

// seedBusyServer gives every page long rows: allowed users and groups,
// exceptions to long host names, attempts, audit records, accounts, tokens.
func seedBusyServer(t *testing.T, e *testEnv) {
	t.Helper()
	ctx := context.Background()
	for _, who := range []string{"alice", "bob", "carol"} {
		if _, err := e.eng.Allow(ctx, setup, "user", who); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.eng.Allow(ctx, setup, "group", "mailers"); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"relay.example.test", "a-very-long-smtp-relay-host-name.customer-mail.example.test"} {
		if _, err := e.eng.AllowException(ctx, setup, "user", "bob", to, "587"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.eng.Enable(ctx, setup, "fake"); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	var evs []store.Event
	for i := range 60 {
		at := now.Add(-time.Duration(i*23) * time.Minute)
		ev := store.Event{UID: 1001, User: "alice", Family: 6, Address: fmt.Sprintf("2001:db8:ffff:ffff:ffff:ffff:ffff:%x", i),
			Port: 587, Action: "blocked", Count: int64(1 + i%9), FirstSeen: at, LastSeen: at}
		if i%2 == 0 { // as bpf records them, with long command lines and paths; the others as nft does
			ev.Process = busyProcess(i)
		}
		evs = append(evs, ev)
	}
	if err := e.eng.RecordEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.addAccount(fmt.Sprintf("reseller-with-a-long-name-%d", i), store.RoleReseller, resellerPassword)
	}
	e.addToken(store.Token{Name: "deploy-pipeline-production", Role: store.RoleReseller, Account: "res-yes"})
}

// busyProcess is a process with the longest fields /proc gives: a 256-byte
// command line without spaces to break at, deep paths, a container id.
func busyProcess(i int) store.Process {
	dir := "/home/alice/public_html/wp-content/plugins/a-plugin-with-a-very-long-directory-name/includes/vendor"
	p := store.Process{PID: uint32(100000 + i), Comm: "php-fpm8.2", Exe: "/usr/sbin/php-fpm8.2", Cwd: dir,
		Cgroup: "/system.slice/php8.2-fpm.service", Unit: "php8.2-fpm.service"}
	switch i % 3 {
	case 0:
		p.Comm, p.Exe = "php", "/usr/bin/php8.2"
		p.Cmdline = ("php " + dir + "/" + strings.Repeat("mailer_", 40))[:252] + ".php"
	case 1:
		p.Cmdline, p.Pool = "php-fpm: pool "+strings.Repeat("x", 60), strings.Repeat("x", 60)
	default:
		id := strings.Repeat("3f2a9c1b", 8)
		p.Comm, p.Exe, p.Cmdline = "python3", "/usr/bin/python3.11", "python3 /app/"+strings.Repeat("send-", 40)+"mail.py"
		p.Cgroup, p.Unit, p.Container = "/system.slice/docker-"+id+".scope", "docker-"+id+".scope", id
	}
	return p
}

// pagesOf are the pages each requester can open.
var pagesOf = map[string][]string{
	"admin":    {"/", "/events", "/events?since=30d", "/allowed", "/settings", "/mta", "/audit", "/accounts", "/no-such-page"},
	"reseller": {"/", "/events", "/no-such-page"},
}

// TestBrowserNoPageScrollsSidewaysOnAPhone: at 390 and 360 px no page is
// wider than the screen, the navigation fits, and the chart's labels stay
// readable, for an administrator and a reseller.
func TestBrowserNoPageScrollsSidewaysOnAPhone(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL

	type fit struct {
		Scroll, Inner   int
		NavRight        float64
		Wide            string
		AxisPx          float64
		LongestTableCSS string
	}
	// What the page measures of itself: its width against the screen's, the
	// rightmost tab, the element sticking out, and the axis text's height.
	const measure = `(() => {
		const w = innerWidth;
		let wide = "";
		for (const el of document.body.querySelectorAll("*")) {
			const r = el.getBoundingClientRect();
			if (r.right > w + 0.5 && !el.closest(".card, .table-wrap, nav")) { wide = el.tagName + "." + el.className + "#" + el.id; break; }
		}
		let nav = 0;
		for (const a of document.querySelectorAll("nav.tabs a")) nav = Math.max(nav, a.getBoundingClientRect().right);
		const axis = document.querySelector("svg.chart text.axis");
		return {Scroll: document.documentElement.scrollWidth, Inner: w, NavRight: nav, Wide: wide,
			AxisPx: axis ? axis.getBoundingClientRect().height : 0};
	})()`
	check := func(who string, width int64) {
		t.Helper()
		b.run(fmt.Sprintf("%d px viewport", width), chromedp.EmulateViewport(width, 800))
		for _, path := range pagesOf[who] {
			var got fit
			b.run("open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible("main h1", chromedp.ByQuery),
				chromedp.Evaluate(measure, &got))
			if got.Scroll > got.Inner {
				t.Errorf("%s at %d px: %s is %d px wide, scrolls sideways (sticking out: %s)", who, width, path, got.Scroll, got.Wide)
			}
			if got.NavRight > float64(got.Inner)+0.5 {
				t.Errorf("%s at %d px: %s: the navigation reaches %.0f px, past the screen", who, width, path, got.NavRight)
			}
			if strings.HasPrefix(path, "/events") && got.AxisPx < 10 {
				t.Errorf("%s at %d px: %s: chart labels are %.1f px tall, want at least 10", who, width, path, got.AxisPx)
			}
			if width == 360 {
				b.shot(fmt.Sprintf("16-phone-%s-%d%s", who, width, strings.NewReplacer("/", "-", "?", "-", "=", "-").Replace(path)))
			}
		}
	}
	b.login(base, "admin", adminPassword)
	b.waitText("#state", "Enforcing")
	check("admin", 390)
	check("admin", 360)
	// The confirmation page too.
	b.run("open the status page", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#toggle", chromedp.ByQuery), chromedp.Click("#toggle", chromedp.ByQuery))
	b.waitText("#question", "Disable")
	var sw, iw int
	b.run("measure the confirmation", chromedp.Evaluate(`document.documentElement.scrollWidth`, &sw), chromedp.Evaluate(`innerWidth`, &iw))
	if sw > iw {
		t.Errorf("the confirmation page scrolls sideways at 360 px: %d > %d", sw, iw)
	}
	b.logout()
	var loginW, loginIW int
	b.run("measure the sign-in page", chromedp.Evaluate(`document.documentElement.scrollWidth`, &loginW), chromedp.Evaluate(`innerWidth`, &loginIW))
	if loginW > loginIW {
		t.Errorf("the sign-in page scrolls sideways at 360 px: %d > %d", loginW, loginIW)
	}
	b.login(base, "res-yes", resellerPassword)
	b.waitText("#state", "Enforcing")
	check("reseller", 390)
	check("reseller", 360)
}

// TestBrowserHonestStateConfirmationsAndSignIn: the status card tells log
// mode and drift from enforcement; Disable, log mode, removing an entry,
// deleting an account and revoking a token ask first, without script; a
// reload after a change does not repeat it; sign-in returns to the page
// asked for and tells of failed attempts; unknown pages are styled; the
// skip link comes first; list buttons say what they act on.
func TestBrowserHonestStateConfirmationsAndSignIn(t *testing.T) {
	b := newBrowser(t)
	e := newTestEnv(t)
	seedBusyServer(t, e)
	ts := httptest.NewServer(e.srv)
	t.Cleanup(ts.Close)
	base := ts.URL
	ctx := context.Background()

	// Two wrong passwords, then the right one, from the page asked for.
	var loc string
	b.run("open the audit log signed out", chromedp.Navigate(base+"/audit"), chromedp.WaitVisible("#signin", chromedp.ByQuery), chromedp.Location(&loc))
	if want := base + "/login?next=" + url.QueryEscape("/audit"); loc != want {
		t.Errorf("signed-out /audit went to %s, want %s", loc, want)
	}
	for range 2 {
		// Marked, so the wait below sees the answer's page, not this one's
		// error from the attempt before (its nodes go away on navigation).
		b.run("a wrong password", chromedp.Evaluate(`window.sgBefore = true`, nil),
			fill("#username", "admin"), fill("#password", "guess"), chromedp.Click("#signin", chromedp.ByQuery))
		b.waitNewPage("the answer to a wrong password")
		b.waitText("#error", "Wrong username or password")
	}
	b.run("the right password", fill("#password", adminPassword), chromedp.Click("#signin", chromedp.ByQuery))
	b.waitText("#flash", "2 failed sign-ins to your account since your last successful one")
	b.run("where sign-in went", chromedp.Location(&loc))
	if loc != base+"/audit" {
		t.Errorf("after signing in from /audit: at %s", loc)
	}
	b.shot("16-signin-failures")

	// The skip link is the first thing the keyboard reaches.
	var focused string
	b.run("press Tab", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#state", chromedp.ByQuery),
		chromedp.KeyEvent(kb.Tab), chromedp.Evaluate(`document.activeElement.className + " " + document.activeElement.getAttribute("href")`, &focused))
	if focused != "skip #main" {
		t.Errorf("the first Tab focuses %q, want the skip link", focused)
	}

	// Log only: amber, and it says nothing is blocked.
	mode := "log"
	if _, err := e.eng.SetSettings(ctx, setup, engine.Settings{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	b.run("reload the status", chromedp.Navigate(base+"/"))
	b.waitText("#state", "Log only, nothing is blocked")
	var class string
	b.run("state card class", chromedp.AttributeValue("#state-card", "class", &class, nil, chromedp.ByQuery))
	if !strings.Contains(class, "tone-warn") {
		t.Errorf("log-only state card class %q, want tone-warn", class)
	}
	b.shot("16-log-only")
	mode = "reject"
	if _, err := e.eng.SetSettings(ctx, setup, engine.Settings{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	// Drift: red with the fix.
	e.backend.Tamper(nil)
	b.run("reload the status", chromedp.Navigate(base+"/"))
	b.waitText("#state", "Drifted")
	b.waitText("#state-fix", "press Apply again")
	b.shot("16-drift")
	b.run("press Apply again", chromedp.Click("#reapply", chromedp.ByQuery))
	b.waitText("#flash", "applied again and match the stored policy")
	b.waitText("#state", "Enforcing")

	// Switching to log mode asks first; Cancel changes nothing.
	b.run("choose log only", chromedp.Navigate(base+"/settings"), chromedp.WaitVisible("#save", chromedp.ByQuery),
		chromedp.Click(`input[name="mode"][value="log"]`, chromedp.ByQuery), chromedp.Click("#save", chromedp.ByQuery))
	b.waitText("#effect", "Nothing will be blocked")
	b.run("cancel", chromedp.Click("#confirm-cancel", chromedp.ByQuery), chromedp.WaitVisible("#save", chromedp.ByQuery))
	if p, _, _ := e.st.Policy(ctx); p.Mode != "reject" {
		t.Fatalf("mode after Cancel = %s, want reject", p.Mode)
	}

	// Remove alice: the button says whom; the question comes first.
	b.run("press Remove user alice", chromedp.Navigate(base+"/allowed"), chromedp.WaitVisible("#users", chromedp.ByQuery),
		chromedp.Click(`button[aria-label="Remove user alice"]`, chromedp.ByQuery))
	b.waitText("#question", "Remove user alice from the allowed users?")
	if st, _ := e.eng.Status(ctx); !contains(st.AllowedUsers, "alice") {
		t.Fatal("alice was removed before the question was answered")
	}
	b.shot("16-confirm-remove")
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery))
	b.waitText("#flash", "alice")
	if st, _ := e.eng.Status(ctx); contains(st.AllowedUsers, "alice") {
		t.Fatal("alice still allowed after confirming")
	}
	// Post/redirect/get: reloading the page after the change repeats nothing.
	audited := len(e.audit())
	b.run("where the change went", chromedp.Location(&loc))
	if loc != base+"/allowed" {
		t.Errorf("after removing alice: at %s, want /allowed", loc)
	}
	b.run("reload", chromedp.Reload(), chromedp.WaitVisible("#users", chromedp.ByQuery))
	if n := len(e.audit()); n != audited {
		t.Errorf("reloading after a change wrote %d audit records", n-audited)
	}
	// Allowing bob again changes nothing, and is not shown as a success.
	b.run("allow bob again", fill("#name", "bob"), chromedp.Click("#allow", chromedp.ByQuery))
	b.waitText("#flash", "Nothing changed")
	var tone string
	b.run("flash tone", chromedp.AttributeValue("#flash", "data-tone", &tone, nil, chromedp.ByQuery))
	if tone != toneInfo {
		t.Errorf("allowing an allowed user: flash tone %q, want info", tone)
	}
	// A host that does not resolve is a warning, in words.
	b.run("allow an unresolvable relay", fill("#name", "carol"), fill("#to", "smtp.typo.example"), chromedp.Click("#allow", chromedp.ByQuery))
	got := b.waitText("#flash", "does not resolve to any address now (no such name in DNS)")
	if strings.Contains(got, "lookup ") || strings.Contains(got, "--") {
		t.Errorf("the warning shows a raw DNS error or a flag: %q", got)
	}
	b.shot("16-unresolved-warning")

	// Every button in a list names what it acts on, for screen readers.
	for _, path := range []string{"/allowed", "/accounts"} {
		var unnamed []string
		b.run("open "+path, chromedp.Navigate(base+path), chromedp.WaitVisible("main h1", chromedp.ByQuery),
			chromedp.Evaluate(`[...document.querySelectorAll("td button")].filter(b => !(b.getAttribute("aria-label") || "").includes(" ")).map(b => b.outerHTML)`, &unnamed))
		if len(unnamed) > 0 {
			t.Errorf("%s: list buttons without a name of what they act on: %v", path, unnamed)
		}
	}

	// Delete an account and revoke a token: both ask first.
	b.run("press Delete account reseller-with-a-long-name-0", chromedp.Navigate(base+"/accounts"), chromedp.WaitVisible("#accounts", chromedp.ByQuery),
		chromedp.Click(`#delete-reseller-with-a-long-name-0`, chromedp.ByQuery))
	b.waitText("#question", "Delete the account reseller-with-a-long-name-0?")
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery))
	b.waitText("#flash", "reseller-with-a-long-name-0")
	if _, err := e.st.Account(ctx, "reseller-with-a-long-name-0"); err == nil {
		t.Error("the account is still there after confirming its deletion")
	}
	b.run("press Revoke API token ci", chromedp.Click(`#revoke-token-ci`, chromedp.ByQuery))
	b.waitText("#question", "Revoke the API token ci?")
	b.run("confirm", chromedp.Click("#confirm-yes", chromedp.ByQuery))
	b.waitText("#flash", "ci")
	if w := e.do(req{method: "GET", path: "/api/v1/status", bearer: e.tokens["ci"]}); w.Code != http.StatusUnauthorized {
		t.Errorf("the revoked token still works: %d", w.Code)
	}
	// Token creation picks the account from a list.
	var options []string
	b.run("token account choices", chromedp.Evaluate(`[...document.querySelectorAll("#token-account option")].map(o => o.value)`, &options))
	if !contains(options, "res-yes") || !contains(options, "") {
		t.Errorf("Acts for account offers %v, want none and the accounts", options)
	}

	// Unknown pages: styled, 404.
	b.run("open a page that does not exist", chromedp.Navigate(base+"/no-such-page"), chromedp.WaitVisible("#refusal", chromedp.ByQuery))
	b.waitText("#refusal", "there is no page at /no-such-page")
	if st := b.status(base + "/no-such-page"); st != http.StatusNotFound {
		t.Errorf("GET /no-such-page answered %d, want 404", st)
	}
	var bg string
	b.run("is it styled", chromedp.Evaluate(`getComputedStyle(document.querySelector("header.top")).display`, &bg))
	if bg != "flex" {
		t.Errorf("the 404 page is not styled (header display %q)", bg)
	}
	b.logout()

	// A reseller is told Enable and Disable act on every user, and asked.
	b.login(base, "res-yes", resellerPassword)
	b.waitText("#scope", "affect every user on it")
	b.run("press Disable", chromedp.Click("#toggle", chromedp.ByQuery))
	b.waitText("#effect", "This affects every user on the server, not only yours.")
	b.run("cancel", chromedp.Click("#confirm-cancel", chromedp.ByQuery))
	b.waitText("#state", "Enforcing")
	if e.backend.Installed() == nil {
		t.Error("Cancel disabled the restriction")
	}
	b.shot("16-reseller")
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
