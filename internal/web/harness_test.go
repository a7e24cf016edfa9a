package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/store"
)

// Test roles, the same everywhere in this package's tests:
//   - admin:       an admin account
//   - res-no:      a reseller without smtp-restrictions
//   - res-yes:     a reseller granted smtp-restrictions, owning system user alice
//   - token ci:    an admin API token
//   - token res-bot: a reseller token acting for res-yes
const (
	adminPassword    = "admin-password-1"
	resellerPassword = "reseller-password-1"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:2000::/home/bob:/bin/bash
carol:x:1003:1003::/home/carol:/bin/bash
`

const testGroup = `root:x:0:
alice:x:1001:
mailers:x:2000:carol
carol:x:1003:
`

// cheapArgon2 keeps tests fast; production uses store.DefaultArgon2.
var cheapArgon2 = store.Argon2Params{Memory: 64, Time: 1, Threads: 1}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex // protects now
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// offlineResolver answers relay.example.test and nothing else, so no test
// here ever asks a real name server.
type offlineResolver struct{}

func (offlineResolver) LookupHost(_ context.Context, host string) ([]netip.Addr, time.Duration, error) {
	if host == "relay.example.test" {
		return []netip.Addr{netip.MustParseAddr("192.0.2.25")}, time.Minute, nil
	}
	return nil, 0, fmt.Errorf("lookup %s: no such host", host)
}

type testEnv struct {
	t   testing.TB
	srv *Server
	eng *engine.Engine
	st  store.View
	// raw writes the same database directly, for tests that seed more
	// rows than engine operations would make in reasonable time.
	raw *store.Store
	// seeded is the last audit record of the set-up, which tests that
	// count audit records skip.
	seeded  int64
	backend *fake.Backend
	clock   *clock
	tokens  map[string]string // token name -> secret
}

func newTestEnv(t testing.TB, tweak ...func(*Config)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b := fake.New("fake")
	clk := &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	eng, err := engine.Open(context.Background(), engine.Config{
		StateDir:   filepath.Join(dir, "state"),
		PasswdPath: write("passwd", testPasswd),
		GroupPath:  write("group", testGroup),
		MTA:        mta.Config{Root: filepath.Join(dir, "root")},
		Backends:   []enforce.Backend{b},
		Resolver:   offlineResolver{},
		Argon2:     cheapArgon2,
		Now:        clk.Now,
	})
	if err != nil {
		t.Fatalf("engine.Open() = %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	cfg := Config{Engine: eng, Now: clk.Now, Hostname: "mail.example.test"}
	for _, f := range tweak {
		f(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	raw, err := store.Open(context.Background(), filepath.Join(eng.StateDir(), store.FileName))
	if err != nil {
		t.Fatalf("store.Open() = %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	e := &testEnv{t: t, srv: srv, eng: eng, st: eng.Store(), raw: raw, backend: b, clock: clk, tokens: map[string]string{}}
	e.addAccount("admin", store.RoleAdmin, adminPassword)
	e.addAccount("res-no", store.RoleReseller, resellerPassword)
	e.addAccount("res-yes", store.RoleReseller, resellerPassword)
	ctx := context.Background()
	if _, err := eng.Grant(ctx, setup, "res-yes", store.PrivSMTPRestrictions); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.SetOwned(ctx, setup, "res-yes", []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	e.addToken(store.Token{Name: "ci", Role: store.RoleAdmin})
	e.addToken(store.Token{Name: "res-bot", Role: store.RoleReseller, Account: "res-yes"})
	if recs, err := e.st.Audit(ctx, store.AuditFilter{Limit: 1}); err != nil || len(recs) != 1 {
		t.Fatalf("audit log after set-up = %v, %v", recs, err)
	} else {
		e.seeded = recs[0].ID
	}
	return e
}

// setup is who makes the test environment's accounts and tokens.
var setup = engine.Actor{Name: "test-setup", Source: "cli"}

// audit returns the audit records written since the set-up, newest first.
func (e *testEnv) audit() []store.AuditRecord {
	e.t.Helper()
	recs, err := e.st.Audit(context.Background(), store.AuditFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditRecord
	for _, r := range recs {
		if r.ID > e.seeded {
			out = append(out, r)
		}
	}
	return out
}

func (e *testEnv) addAccount(name, role, password string) {
	e.t.Helper()
	if _, err := e.eng.AddAccount(context.Background(), setup, name, role, password); err != nil {
		e.t.Fatalf("AddAccount(%s) = %v", name, err)
	}
}

func (e *testEnv) addToken(tok store.Token) string {
	e.t.Helper()
	secret, _, err := e.eng.CreateToken(context.Background(), setup, tok.Name, tok.Role, tok.Account)
	if err != nil {
		e.t.Fatalf("CreateToken(%s) = %v", tok.Name, err)
	}
	e.tokens[tok.Name] = secret
	return secret
}

// req describes one request; zero fields take browser-like defaults.
type req struct {
	method, path string
	form         url.Values // sent as a form body
	json         string     // sent as a JSON body
	cookie       string     // session secret
	bearer       string     // API token
	fetchSite    string     // Sec-Fetch-Site; "" means same-origin
	origin       string
	remote       string // client address, default 192.0.2.10:40000
}

func (e *testEnv) do(r req) *httptest.ResponseRecorder {
	e.t.Helper()
	var body io.Reader
	ct := ""
	switch {
	case r.form != nil:
		body, ct = strings.NewReader(r.form.Encode()), "application/x-www-form-urlencoded"
	case r.json != "":
		body, ct = strings.NewReader(r.json), "application/json"
	}
	hr := httptest.NewRequest(r.method, "http://mail.example.test:9725"+r.path, body)
	if ct != "" {
		hr.Header.Set("Content-Type", ct)
	}
	hr.RemoteAddr = "192.0.2.10:40000"
	if r.remote != "" {
		hr.RemoteAddr = r.remote
	}
	site := r.fetchSite
	if site == "" {
		site = "same-origin"
	}
	if site != "none-sent" {
		hr.Header.Set("Sec-Fetch-Site", site)
	}
	if r.origin != "" {
		hr.Header.Set("Origin", r.origin)
	}
	if r.cookie != "" {
		hr.AddCookie(&http.Cookie{Name: Cookie, Value: r.cookie})
	}
	if r.bearer != "" {
		hr.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, hr)
	return w
}

// login signs in and returns the session secret. The sign-in's audit record
// counts as set-up: e.audit() starts after it.
func (e *testEnv) login(name, password string) string {
	e.t.Helper()
	w := e.do(req{method: "POST", path: "/login", form: url.Values{"username": {name}, "password": {password}}})
	if w.Code != http.StatusSeeOther {
		e.t.Fatalf("POST /login as %s = %d, want 303; body:\n%s", name, w.Code, w.Body.String())
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == Cookie && c.Value != "" {
			if recs := e.audit(); len(recs) > 0 {
				e.seeded = recs[0].ID
			}
			return c.Value
		}
	}
	e.t.Fatalf("POST /login as %s set no session cookie", name)
	return ""
}

func decode[T any](t testing.TB, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json; body %s", ct, w.Body.String())
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("body is not the expected JSON: %v\n%s", err, w.Body.String())
	}
	return v
}

// httptestRequest builds a same-origin request for tests that set headers
// themselves.
func httptestRequest(method, path string) *http.Request {
	r := httptest.NewRequest(method, "http://mail.example.test:9725"+path, nil)
	r.RemoteAddr = "192.0.2.10:40000"
	return r
}

func serve(e *testEnv, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	e.srv.ServeHTTP(w, r)
	return w
}

func readCloser(s string) io.ReadCloser { return io.NopCloser(strings.NewReader(s)) }
