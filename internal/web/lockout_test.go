package web

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// countChecks makes the server count its password verifications.
func (e *testEnv) countChecks() *atomic.Int64 {
	var n atomic.Int64
	verify := e.srv.verify
	e.srv.verify = func(encoded, password string) (bool, error) {
		n.Add(1)
		return verify(encoded, password)
	}
	return &n
}

func (e *testEnv) try(user, pw, remote string) *httpResult {
	w := e.do(req{method: "POST", path: "/login", remote: remote, form: url.Values{"username": {user}, "password": {pw}}})
	return &httpResult{code: w.Code, body: w.Body.String(), retryAfter: w.Header().Get("Retry-After")}
}

type httpResult struct {
	code       int
	body       string
	retryAfter string
}

// TestLockoutCountsAttemptsBeforeCheckingThem: 50 wrong passwords sent at
// once from one address get at most the limit (5) checked; the others are
// refused with 429 without a check. The checks are held until the refusals
// are in, so all 50 attempts are truly in flight together: a lockout that
// counted failures only after their check (the old one) lets every attempt
// through to the check, no refusal ever comes, and the test fails.
func TestLockoutCountsAttemptsBeforeCheckingThem(t *testing.T) {
	e := newTestEnv(t)
	const n, limit = 50, 5
	var checks atomic.Int64
	gate := make(chan struct{})
	var open sync.Once
	verify := e.srv.verify
	e.srv.verify = func(encoded, password string) (bool, error) {
		checks.Add(1)
		<-gate
		return verify(encoded, password)
	}
	codes := make([]int, n)
	var refused atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			codes[i] = e.try("admin", "wrong-password", "198.51.100.20:1").code
			if codes[i] == http.StatusTooManyRequests && refused.Add(1) == n-limit {
				open.Do(func() { close(gate) })
			}
		})
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		open.Do(func() { close(gate) })
		<-done
		t.Fatalf("after 30s only %d of %d attempts were refused while %d waited in the password check: attempts beyond the limit reached the check", refused.Load(), n, checks.Load())
	}
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if got := checks.Load(); got > limit {
		t.Errorf("%d passwords checked for %d simultaneous attempts, want at most %d", got, n, limit)
	}
	if count[http.StatusUnauthorized] != int(checks.Load()) || count[http.StatusTooManyRequests] != n-count[http.StatusUnauthorized] {
		t.Errorf("answers = %v after %d checks, want a 401 per check and 429 for the rest", count, checks.Load())
	}
	// Even the right password is refused from that address, unchecked.
	before := checks.Load()
	if r := e.try("admin", adminPassword, "198.51.100.20:2"); r.code != http.StatusTooManyRequests || r.retryAfter == "" {
		t.Errorf("right password from the locked address = %d (Retry-After %q), want 429 with Retry-After", r.code, r.retryAfter)
	}
	if checks.Load() != before {
		t.Error("a locked-out attempt was checked")
	}
}

// TestLockoutHurtsTheAttackerNotTheOwner: five wrong passwords lock the
// account for the address they came from only; the owner signs in from
// elsewhere at once, and the lockout lifts after its time.
func TestLockoutHurtsTheAttackerNotTheOwner(t *testing.T) {
	e := newTestEnv(t)
	const attacker, owner = "203.0.113.66:1", "192.0.2.44:1"
	for i := range 5 {
		if r := e.try("admin", "wrong", attacker); r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i+1, r.code)
		}
	}
	r := e.try("admin", adminPassword, attacker)
	if r.code != http.StatusTooManyRequests || !strings.Contains(r.body, "Too many failed sign-ins") || !strings.Contains(r.body, "smtpguard account unlock admin") {
		t.Errorf("right password from the attacker's address = %d, want 429 saying why and how to lift it:\n%s", r.code, r.body)
	}
	if r := e.try("admin", adminPassword, owner); r.code != http.StatusSeeOther {
		t.Errorf("the owner from another address while the attacker's is locked = %d, want 303", r.code)
	}
	if r := e.try("res-yes", resellerPassword, attacker); r.code != http.StatusSeeOther {
		t.Errorf("another account from the attacker's address = %d, want 303", r.code)
	}
	e.clock.Advance(15 * time.Minute)
	if r := e.try("admin", adminPassword, attacker); r.code != http.StatusSeeOther {
		t.Errorf("after the lockout = %d, want 303", r.code)
	}
	// Success forgets that address's failures: four more do not lock.
	for range 4 {
		e.try("admin", "wrong", attacker)
	}
	if r := e.try("admin", adminPassword, attacker); r.code != http.StatusSeeOther {
		t.Errorf("4 failures after a success = %d, want 303", r.code)
	}
	// A name that does not exist is locked the same way, so lockouts do
	// not reveal which accounts exist.
	for range 5 {
		e.try("ghost", "x", "192.0.2.2:1")
	}
	if r := e.try("ghost", "x", "192.0.2.2:1"); r.code != http.StatusTooManyRequests {
		t.Errorf("unknown account after 5 failures = %d, want 429", r.code)
	}
}

// TestLockoutSlowsDownGuessesFromManyAddresses: spreading guesses for one
// account over many addresses meets a growing wait between checks, never a
// lock, so the owner waits seconds at worst.
func TestLockoutSlowsDownGuessesFromManyAddresses(t *testing.T) {
	e := newTestEnv(t)
	checks := e.countChecks()
	addr := func(i int) string { return "198.51.100." + string(rune('0'+i/10)) + string(rune('0'+i%10)) + ":1" }
	for i := range 6 { // 5 free, the 6th is checked and starts a 1s wait
		if r := e.try("admin", "wrong", addr(i)); r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d, want 401", i+1, r.code)
		}
	}
	r := e.try("admin", "wrong", addr(6))
	if r.code != http.StatusTooManyRequests || r.retryAfter != "1" {
		t.Errorf("7th guess at once = %d (Retry-After %q), want 429 with Retry-After 1", r.code, r.retryAfter)
	}
	if checks.Load() != 6 {
		t.Errorf("%d checks, want 6", checks.Load())
	}
	e.clock.Advance(time.Second)
	if r := e.try("admin", "wrong", addr(7)); r.code != http.StatusUnauthorized {
		t.Errorf("guess after the wait = %d, want 401", r.code)
	}
	if r := e.try("admin", "wrong", addr(8)); r.code != http.StatusTooManyRequests || r.retryAfter != "2" {
		t.Errorf("next guess at once = %d (Retry-After %q), want 429 with a doubled wait of 2s", r.code, r.retryAfter)
	}
	// The owner waits at most the longest delay, not a lockout.
	e.clock.Advance(time.Minute)
	if r := e.try("admin", adminPassword, "192.0.2.44:1"); r.code != http.StatusSeeOther {
		t.Errorf("the owner after a minute = %d, want 303", r.code)
	}
}

// TestLockoutSlowsDownNameSprayingFromOneAddress: 20 failures over many names
// from one address slow that address down; it is not locked, so the
// administrators who share it (127.0.0.1 through an SSH tunnel) get in after
// a second.
func TestLockoutSlowsDownNameSprayingFromOneAddress(t *testing.T) {
	e := newTestEnv(t)
	const shared = "127.0.0.1:5555"
	for i := range 21 {
		if r := e.try("user"+string(rune('a'+i)), "x", shared); r.code != http.StatusUnauthorized {
			t.Fatalf("failure %d = %d", i+1, r.code)
		}
	}
	if r := e.try("admin", adminPassword, shared); r.code != http.StatusTooManyRequests {
		t.Errorf("from the spraying address at once = %d, want 429", r.code)
	}
	if r := e.try("admin", adminPassword, "192.0.2.44:1"); r.code != http.StatusSeeOther {
		t.Errorf("from another address = %d, want 303", r.code)
	}
	e.clock.Advance(time.Second)
	if r := e.try("admin", adminPassword, shared); r.code != http.StatusSeeOther {
		t.Errorf("from the shared address a second later = %d, want 303", r.code)
	}
}

// TestLockoutSurvivesARestart: the counts live in the store, so a new
// handler over the same database (a restarted daemon) still refuses.
func TestLockoutSurvivesARestart(t *testing.T) {
	e := newTestEnv(t)
	for range 5 {
		e.try("admin", "wrong", "203.0.113.66:1")
	}
	srv, err := New(e.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	checks := e.countChecks()
	if r := e.try("admin", adminPassword, "203.0.113.66:1"); r.code != http.StatusTooManyRequests {
		t.Errorf("after re-creating the handler = %d, want 429", r.code)
	}
	if checks.Load() != 0 {
		t.Errorf("the new handler checked %d passwords from a locked address", checks.Load())
	}
}

// TestLockoutIsAuditedAndUnlockLiftsIt: failed sign-ins and the lockout are
// in the audit log; UnlockAccount lifts it at once, audited, and an unlock
// of nothing records nothing.
func TestLockoutIsAuditedAndUnlockLiftsIt(t *testing.T) {
	e := newTestEnv(t)
	for range 5 {
		e.try("admin", "wrong", "203.0.113.66:1")
	}
	type row struct{ Actor, Remote, Operation, Outcome string }
	var got []row
	for _, r := range e.audit() {
		got = append(got, row{r.Actor, r.Remote, r.Operation, r.Outcome})
	}
	failed := row{"anonymous", "203.0.113.66", "sign-in", "failed: wrong username or password"}
	want := []row{{"anonymous", "203.0.113.66", "sign-in lockout", "ok"}, failed, failed, failed, failed, failed}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit log (-want +got):\n%s", diff)
	}
	if d := e.audit()[0].Detail; !strings.Contains(d, "account admin") || !strings.Contains(d, "203.0.113.66") {
		t.Errorf("lockout record detail = %q, want the account and the address", d)
	}
	// A refused attempt is not recorded: a flood cannot fill the audit log.
	e.try("admin", "wrong", "203.0.113.66:1")
	if n := len(e.audit()); n != 6 {
		t.Errorf("%d audit records after a refused attempt, want still 6", n)
	}

	res, err := e.eng.UnlockAccount(t.Context(), setup, "admin")
	if err != nil || !res.Changed {
		t.Fatalf("UnlockAccount(admin) = %+v, %v", res, err)
	}
	if r := e.try("admin", adminPassword, "203.0.113.66:1"); r.code != http.StatusSeeOther {
		t.Errorf("after account unlock = %d, want 303", r.code)
	}
	// The successful sign-in is recorded too, after the unlock.
	if recs := e.audit(); recs[0].Operation != "sign-in" || recs[0].Outcome != "ok" || recs[1].Operation != "account unlock" || recs[1].Detail != "admin" {
		t.Errorf("last audit records = %+v, %+v; want account unlock admin, then sign-in ok", recs[1], recs[0])
	}
	res, err = e.eng.UnlockAccount(t.Context(), setup, "admin")
	if err != nil || res.Changed || !strings.Contains(res.Message, "nothing changed") {
		t.Errorf("second UnlockAccount(admin) = %+v, %v; want no change", res, err)
	}
	if n := len(e.audit()); n != 8 {
		t.Errorf("%d audit records, want 8: the second unlock changed nothing", n)
	}
}

// TestAccountsPageShowsLockouts: administrators see who is locked out from
// where, and how to lift it.
func TestAccountsPageShowsLockouts(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin", adminPassword)
	if body := e.do(req{method: "GET", path: "/accounts", cookie: admin}).Body.String(); strings.Contains(body, `id="lockouts"`) {
		t.Error("the accounts page lists lockouts when there are none")
	}
	for range 5 {
		e.try("res-yes", "wrong", "203.0.113.66:1")
	}
	body := e.do(req{method: "GET", path: "/accounts", cookie: admin}).Body.String()
	if !strings.Contains(body, `id="lockouts"`) || !strings.Contains(body, "203.0.113.66") || !strings.Contains(body, "smtpguard account unlock") {
		t.Errorf("the accounts page does not show the lockout of res-yes from 203.0.113.66:\n%s", body)
	}
}
