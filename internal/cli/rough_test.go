package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
)

// import lists every problem of a file at once: decoding ones, unknown
// accounts and bad values together, not only the first kind.
func TestImportListsEveryProblem(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		name, file string
		want       []string
	}{
		{"unknown account and bad ports", "version = 1\nenabled = true\nports = [0, 70000]\nallowed_users = [\"mallory\"]\n",
			[]string{"user mallory", "port 0 is outside", "port 70000 is outside", "nothing changed"}},
		{"bad value, unknown key, unknown account, bad port", "version = 1\nenabled = true\nmode = 5\nfirewall = 1\nports = [0]\nallowed_users = [\"mallory\"]\n",
			[]string{"mode: want reject, redirect, explain or log", `unknown keys: "firewall"`, "user mallory", "port 0 is outside"}},
		{"yaml without enabled and with a bad port", "version: 1\nports: [0]\nfoo: 1\n",
			[]string{`unknown key "foo"`, "enabled: missing", "port 0 is outside"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.ok("export")
			r := h.runIn(tt.file, "import", "-")
			if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("import: exit %d stderr %q, want exit 2 and one line", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("import error %q lacks %q", r.stderr, w)
				}
			}
			if h.ok("export") != before {
				t.Error("a rejected import changed the policy")
			}
		})
	}
}

// YAML on standard input is recognised; what cannot be read says how to
// name the format.
func TestImportYAMLFromStdin(t *testing.T) {
	h := newHarness(t)
	r := h.runIn("# from a pipe\nversion: 1\nenabled: false\nallowed_users:\n  - alice\n", "import", "-")
	if r.code != 0 {
		t.Fatalf("YAML on stdin: exit %d, %s", r.code, r.stderr)
	}
	if got := h.status().AllowedUsers; len(got) != 1 || got[0] != "alice" {
		t.Errorf("allowed users after a YAML import from stdin = %v", got)
	}
	r = h.runIn("version = 1\nenabled = false\n[oops\n", "import", "-")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--format yaml") {
		t.Errorf("unreadable stdin: exit %d stderr %q, want a hint to use --format", r.code, r.stderr)
	}
}

// events --limit N shows N rows, but the per-user totals count every
// matching row.
func TestEventsLimitTotalsCountEveryRow(t *testing.T) {
	h := newHarness(t)
	h.ok("status") // creates the state
	st := h.openStore()
	now := time.Now()
	var evs []store.Event
	for i := range 30 {
		at := now.Add(-time.Duration(i) * time.Minute)
		evs = append(evs, store.Event{UID: 1002, User: "bob", Family: 4, Address: fmt.Sprintf("192.0.2.%d", i), Port: 25,
			Action: "blocked", Count: 2, FirstSeen: at, LastSeen: at})
	}
	if err := st.RecordEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	out := h.ok("events", "--limit", "5")
	var totals string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "bob ") && strings.Contains(line, "1002") && !strings.Contains(line, "192.0.2.") {
			totals = strings.Join(strings.Fields(line), " ")
		}
	}
	if totals != "bob 1002 60 30" {
		t.Errorf("totals line = %q, want \"bob 1002 60 30\" (every row, not the 5 shown):\n%s", totals, out)
	}
	if !strings.Contains(out, "showing the newest 5 rows") {
		t.Errorf("events --limit 5 does not say the totals count more than the rows:\n%s", out)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(h.ok("events", "--json", "--limit", "5")), &rows); err != nil || len(rows) != 5 {
		t.Errorf("events --json --limit 5: %d rows, %v", len(rows), err)
	}
}

// plan after a plain enable names the backend enforcing now, not "requested
// explicitly"; with --backend it is.
func TestPlanAfterPlainEnable(t *testing.T) {
	h := newHarness(t)
	h.ok("enable")
	if out := h.ok("plan"); strings.Contains(out, "requested explicitly") || !strings.Contains(out, "# backend fake (the backend enforcing now)") {
		t.Errorf("plan after enable:\n%s", out)
	}
	if out := h.ok("plan", "--backend", "fake"); !strings.Contains(out, "requested explicitly") {
		t.Errorf("plan --backend fake:\n%s", out)
	}
}

// Mistyped commands suggest the nearest, and still exit 2.
func TestUnknownCommandsSuggest(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"enabel"}, "did you mean 'enable'?"},
		{[]string{"stat"}, "did you mean 'status'?"},
		{[]string{"revok", "user", "bob"}, "did you mean 'revoke'?"},
		{[]string{"account", "ad", "x"}, "did you mean 'add'?"},
		{[]string{"xyzzy"}, ""},
	}
	for _, tt := range tests {
		r := h.run(tt.args...)
		if r.code != ExitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "unknown command") {
			t.Errorf("%v: exit %d stderr %q, want exit 2 and one line", tt.args, r.code, r.stderr)
		}
		if tt.want == "" && strings.Contains(r.stderr, "did you mean") || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: stderr %q, want %q", tt.args, r.stderr, tt.want)
		}
	}
}

// A uid without an account is allowed with a note saying so; root is always
// allowed and cannot be revoked; a bad CIDR is explained in words.
func TestAllowRevokeEdgeCases(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"allow", "user", "99999"}, 0, "user 99999 allowed to connect to remote SMTP servers; note: no account on this host has id 99999 yet (allowed anyway)", ""},
		{[]string{"allow", "user", "alice"}, 0, "user alice allowed to connect to remote SMTP servers", ""},
		{[]string{"allow", "user", "root"}, 0, "root (uid 0) is always allowed; nothing changed", ""},
		{[]string{"revoke", "user", "root"}, 0, "root (uid 0) is always allowed and cannot be revoked; nothing changed", ""},
		{[]string{"revoke", "user", "0"}, 0, "root (uid 0) is always allowed and cannot be revoked; nothing changed", ""},
		{[]string{"allow", "user", "alice", "--to", "192.0.2.0/33"}, ExitUsage, "", `invalid CIDR "192.0.2.0/33": the prefix length 33 is more than the 32 bits of an IPv4 address`},
		{[]string{"allow", "user", "alice", "--to", "2001:db8::/200"}, ExitUsage, "", "the prefix length 200 is more than the 128 bits of an IPv6 address"},
		{[]string{"allow", "user", "alice", "--to", "192.0.2.x/24"}, ExitUsage, "", `"192.0.2.x" before the slash is not an IPv4 or IPv6 address`},
		{[]string{"allow", "user", "alice", "--to", "192.0.2.0/abc"}, ExitUsage, "", `the prefix length after the slash must be a number, not "abc"`},
	}
	for _, tt := range tests {
		r := h.run(tt.args...)
		if r.code != tt.code || strings.TrimSpace(r.stdout) != tt.out && tt.out != "" || !strings.Contains(r.stderr, tt.err) {
			t.Errorf("smtpguard %s = exit %d, stdout %q, stderr %q; want exit %d, %q, %q", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.code, tt.out, tt.err)
		}
		if strings.Contains(r.stderr, "netip.") {
			t.Errorf("smtpguard %s: stderr shows Go internals: %q", strings.Join(tt.args, " "), r.stderr)
		}
	}
	if got := h.status().AllowedUsers; strings.Join(got, ",") != "99999,alice" && strings.Join(got, ",") != "alice,99999" {
		t.Errorf("allowed users = %v, want 99999 and alice (root is not stored)", got)
	}
}
