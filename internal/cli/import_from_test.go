package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// An administrator leaving CSF: one command, every unknown name listed at
// once and nothing changed, or --skip-unknown to leave them out; --dry-run
// changes nothing; the import is audited with its source.
func TestImportFromCSF(t *testing.T) {
	h := newHarness(t)
	conf := filepath.Join(h.dir, "csf.conf")
	if err := os.WriteFile(conf, []byte("# CSF\nSMTP_BLOCK = \"1\"\nSMTP_PORTS = \"25,587\"\nSMTP_ALLOWUSER = \"alice,ghost\"\nSMTP_ALLOWGROUP = \"mailers,agency\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := h.status()

	r := h.run("import", "--from-csf", conf)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "user ghost, group agency") || !strings.Contains(r.stderr, "--skip-unknown") {
		t.Fatalf("import with unknown names: exit %d, stderr %q; want exit 2 naming user ghost and group agency", r.code, r.stderr)
	}
	if diff := cmp.Diff(before, h.status()); diff != "" {
		t.Fatalf("a refused import changed the policy (-before +after):\n%s", diff)
	}

	out := h.ok("import", "--from-csf", conf, "--skip-unknown", "--dry-run")
	if !strings.Contains(out, "dry run") || !strings.Contains(out, `allowed_users = ["alice"]`) || !strings.Contains(out, "may connect to ports 25,587") {
		t.Errorf("dry run output lacks the policy or the rules:\n%s", out)
	}
	if diff := cmp.Diff(before, h.status()); diff != "" {
		t.Fatalf("--dry-run changed the policy (-before +after):\n%s", diff)
	}
	if calls := h.backend.Calls(); strings.Contains(strings.Join(calls, " "), "apply") {
		t.Errorf("--dry-run applied rules: backend calls %q", calls)
	}

	r = h.run("import", "--from-csf", conf, "--skip-unknown")
	if r.code != 0 {
		t.Fatalf("import --skip-unknown: exit %d: %s", r.code, r.stderr)
	}
	for _, name := range []string{"user ghost", "group agency"} {
		if !strings.Contains(r.stderr, "skipped "+name) {
			t.Errorf("stderr %q does not name the skipped %s", r.stderr, name)
		}
	}
	if !strings.Contains(r.stdout, "note: ") {
		t.Errorf("import output has no notes on what CSF settings mean here:\n%s", r.stdout)
	}
	st := h.status()
	if !st.Enabled || !cmp.Equal(st.Ports, []int{25, 587}) || !cmp.Equal(st.AllowedUsers, []string{"alice"}) || !cmp.Equal(st.AllowedGroups, []string{"mailers"}) {
		t.Errorf("status after import = %+v, want enabled, ports [25 587], users [alice], groups [mailers]", st)
	}
	var recs []struct {
		Operation string `json:"operation"`
		Detail    string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(h.ok("audit", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 || recs[0].Operation != "import" || recs[0].Detail != "csf:"+conf {
		t.Errorf("newest audit record = %+v, want operation import, detail csf:%s", recs, conf)
	}
}

func TestImportSourceFlags(t *testing.T) {
	h := newHarness(t)
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var/cpanel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var/cpanel/smtpgidonlytweak"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The optional ROOT may follow the flag as a separate word.
	if out := h.ok("import", "--from-cpanel", root, "--dry-run"); !strings.Contains(out, "enabled = true") {
		t.Errorf("import --from-cpanel ROOT --dry-run:\n%s", out)
	}
	for _, args := range [][]string{
		{"import"},
		{"import", "--from-csf", "a", "--from-imunify", "b"},
		{"import", "policy.toml", "--from-csf", "a"},
	} {
		if r := h.run(args...); r.code != ExitUsage {
			t.Errorf("smtpguard %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
