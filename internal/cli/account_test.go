package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/store"
)

// openStore opens the harness's database directly, to check what the CLI
// stored.
func (h *harness) openStore() *store.Store {
	h.t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(h.stateDir, store.FileName))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	return st
}

func (h *harness) okIn(stdin string, args ...string) string {
	h.t.Helper()
	r := h.runIn(stdin, args...)
	if r.code != 0 {
		h.t.Fatalf("smtpguard %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

func TestAccountAddReadsThePasswordFromStdin(t *testing.T) {
	h := newHarness(t)
	out := h.okIn("first-password-1\nignored second line\n", "account", "add", "admin", "--role", "admin")
	if !strings.Contains(out, "account admin created with role admin") {
		t.Errorf("account add printed %q", out)
	}
	h.okIn("reseller-pass-1", "account", "add", "res1", "--role", "reseller") // no trailing newline
	st := h.openStore()
	for name, pw := range map[string]string{"admin": "first-password-1", "res1": "reseller-pass-1"} {
		hash, err := st.PasswordHash(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=3,p=4$") {
			t.Errorf("hash of %s = %q, want argon2id with the default parameters", name, hash)
		}
		if ok, err := store.VerifyPassword(hash, pw); !ok || err != nil {
			t.Errorf("the password of %s does not verify (%v): was the line read exactly?", name, err)
		}
	}
	var accts []store.Account
	if err := json.Unmarshal([]byte(h.ok("account", "list", "--json")), &accts); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range accts {
		got = append(got, a.Name+":"+a.Role)
	}
	if !cmp.Equal(got, []string{"admin:admin", "res1:reseller"}) {
		t.Errorf("account list --json = %v", got)
	}
	if out := h.ok("account", "list"); !strings.Contains(out, "res1") || !strings.Contains(out, "PRIVILEGES") {
		t.Errorf("account list = %q", out)
	}
	recs, _ := st.Audit(context.Background(), store.AuditFilter{})
	if len(recs) != 2 || recs[0].Operation != "account add" || recs[0].Actor != "tester" || recs[0].Detail != "res1 role reseller" {
		t.Errorf("audit = %+v", recs)
	}
}

func TestAccountBadInput(t *testing.T) {
	h := newHarness(t)
	h.okIn("first-password-1\n", "account", "add", "admin", "--role", "admin")
	for _, tt := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"long-enough-pw\n", []string{"account", "add", "bob"}, "--role is required"},
		{"long-enough-pw\n", []string{"account", "add", "bob", "--role", "root"}, "unknown role"},
		{"long-enough-pw\n", []string{"account", "add", "Bob Smith", "--role", "admin"}, "invalid account name"},
		{"short\n", []string{"account", "add", "bob", "--role", "admin"}, "too short"},
		{"", []string{"account", "add", "bob", "--role", "admin"}, "no password on standard input"},
		{"\n", []string{"account", "add", "bob", "--role", "admin"}, "no password on standard input"},
		{"long-enough-pw\n", []string{"account", "add", "admin", "--role", "admin"}, "already exists"},
		{"long-enough-pw\n", []string{"account", "add", "bob", "--role", "admin", "--password", "x"}, "unknown flag"},
		{"long-enough-pw\n", []string{"account", "passwd", "ghost"}, "not found"},
		{"", []string{"account", "del", "ghost"}, "not found"},
		{"", []string{"account", "grant", "admin", "smtp-restrictions"}, "holds every privilege"},
		{"", []string{"account", "grant", "admin", "root"}, "unknown privilege"},
		{"", []string{"account", "grant", "ghost", "smtp-restrictions"}, "not found"},
		{"", []string{"account", "own", "admin", "alice"}, "only resellers own users"},
		{"", []string{"account", "own"}, "expects an account name"},
		{"", []string{"account", "bogus"}, "unknown command"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := h.runIn(tt.stdin, tt.args...)
			if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line containing %q", r.code, r.stderr, tt.want)
			}
		})
	}
	accts, _ := h.openStore().Accounts(context.Background())
	if len(accts) != 1 {
		t.Errorf("bad input created accounts: %+v", accts)
	}
}

func TestAccountPrivilegesAndUsers(t *testing.T) {
	h := newHarness(t)
	h.okIn("reseller-pass-1\n", "account", "add", "res1", "--role", "reseller")
	if out := h.ok("account", "grant", "res1", "smtp-restrictions"); !strings.Contains(out, "smtp-restrictions granted to res1") {
		t.Errorf("grant printed %q", out)
	}
	if out := h.ok("account", "grant", "res1", "smtp-restrictions"); !strings.Contains(out, "nothing changed") {
		t.Errorf("second grant printed %q", out)
	}
	if r := h.run("account", "own", "res1", "alice", "mallory"); r.code != ExitUsage || !strings.Contains(r.stderr, `no such system user "mallory"`) {
		t.Errorf("own with an unknown user: exit %d %q", r.code, r.stderr)
	}
	h.ok("account", "own", "res1", "alice", "bob")
	st := h.openStore()
	a, _ := st.Account(context.Background(), "res1")
	if !a.Has(store.PrivSMTPRestrictions) || !cmp.Equal(a.Users, []string{"alice", "bob"}) {
		t.Errorf("res1 = %+v", a)
	}
	h.ok("account", "own", "res1")
	h.ok("account", "revoke", "res1", "smtp-restrictions")
	a, _ = st.Account(context.Background(), "res1")
	if a.Has(store.PrivSMTPRestrictions) || len(a.Users) != 0 {
		t.Errorf("after revoke and own with no users: %+v", a)
	}
	// passwd signs the account out everywhere.
	secret := store.NewSecret("sgs_")
	now := time.Now()
	if err := st.CreateSession(context.Background(), secret, store.Session{Account: "res1", CreatedAt: now, ExpiresAt: now.Add(time.Hour), LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	h.okIn("second-password-2\n", "account", "passwd", "res1")
	if _, err := st.SessionBySecret(context.Background(), secret); err == nil {
		t.Error("account passwd left a session signed in")
	}
	hash, _ := st.PasswordHash(context.Background(), "res1")
	if ok, _ := store.VerifyPassword(hash, "second-password-2"); !ok {
		t.Error("account passwd did not set the new password")
	}
	h.ok("account", "del", "res1")
	if accts, _ := st.Accounts(context.Background()); len(accts) != 0 {
		t.Errorf("after del: %+v", accts)
	}
	var ops []string
	recs, _ := st.Audit(context.Background(), store.AuditFilter{})
	for _, r := range recs {
		ops = append(ops, r.Operation)
	}
	slices.Reverse(ops)
	want := []string{"account add", "account grant", "account own", "account own", "account revoke", "account passwd", "account del"}
	if !cmp.Equal(ops, want) {
		t.Errorf("audited operations = %v, want %v", ops, want)
	}
}

func TestTokenCreateListRevoke(t *testing.T) {
	h := newHarness(t)
	h.okIn("reseller-pass-1\n", "account", "add", "res1", "--role", "reseller")
	var created map[string]string
	if err := json.Unmarshal([]byte(h.ok("token", "create", "deploy", "--role", "admin", "--json")), &created); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range created {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !cmp.Equal(keys, []string{"name", "role", "token"}) || created["name"] != "deploy" || created["role"] != "admin" || !strings.HasPrefix(created["token"], "sgt_") {
		t.Errorf("token create --json = %v, want exactly name, role and token", created)
	}
	r := h.run("token", "create", "billing", "--role", "reseller", "--account", "res1")
	plain := strings.TrimSpace(r.stdout)
	if r.code != 0 || strings.Contains(plain, " ") || !strings.HasPrefix(plain, "sgt_") || !strings.Contains(r.stderr, "cannot be shown again") {
		t.Errorf("token create: exit %d stdout %q stderr %q; want the token alone on stdout", r.code, r.stdout, r.stderr)
	}
	st := h.openStore()
	for secret, name := range map[string]string{created["token"]: "deploy", plain: "billing"} {
		tok, err := st.TokenBySecret(context.Background(), secret)
		if err != nil || tok.Name != name {
			t.Errorf("TokenBySecret(printed %s token) = %+v, %v", name, tok, err)
		}
	}
	list := h.ok("token", "list")
	if strings.Contains(list, created["token"]) || !strings.Contains(list, "billing") || !strings.Contains(list, "res1") {
		t.Errorf("token list = %q: want names, never secrets", list)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"token", "create", "x", "--role", "reseller"}, "--account"},
		{[]string{"token", "create", "x", "--role", "admin", "--account", "res1"}, "must have role reseller"},
		{[]string{"token", "create", "x"}, "--role is required"},
		{[]string{"token", "create", "deploy", "--role", "admin"}, "already exists"},
		{[]string{"token", "revoke", "ghost"}, "not found"},
	} {
		if r := h.run(tt.args...); r.code != ExitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d stderr %q, want exit 2 containing %q", tt.args, r.code, r.stderr, tt.want)
		}
	}
	h.ok("token", "revoke", "deploy")
	if _, err := st.TokenBySecret(context.Background(), created["token"]); err == nil {
		t.Error("a revoked token still resolves")
	}
	if out := h.ok("token", "list", "--json"); !strings.Contains(out, `"billing"`) || strings.Contains(out, "deploy") {
		t.Errorf("token list --json after revoke = %s", out)
	}
}
