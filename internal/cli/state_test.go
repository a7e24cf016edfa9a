package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
)

type kernelJSON struct {
	Kernel struct {
		State    string   `json:"state"`
		Problems []string `json:"problems"`
		Fix      string   `json:"fix"`
		Present  []string `json:"present"`
	} `json:"kernel"`
}

// The database is deleted while the kernel enforces: status must say so,
// with the fix, and exit 1; nothing but an explicit disable lifts the rules.
func TestStatusOfALostDatabase(t *testing.T) {
	h := newHarness(t)
	h.ok("enable", "--backend", "fake")
	for _, f := range []string{"smtpguard.db", "smtpguard.db-wal", "smtpguard.db-shm"} {
		os.Remove(filepath.Join(h.stateDir, f))
	}

	r := h.run("status")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "policy missing") || !strings.Contains(r.stdout, "NO STORED POLICY") {
		t.Errorf("status: exit %d, stdout:\n%s\nwant exit 1 and the kernel state \"policy missing\"", r.code, r.stdout)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "from a backup") || !strings.Contains(r.stderr, "smtpguard disable") {
		t.Errorf("status stderr = %q, want one line with the fix", r.stderr)
	}
	r = h.run("status", "--json")
	var st kernelJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v: %q", err, r.stdout)
	}
	if r.code != ExitFailure || st.Kernel.State != "policy missing" || !strings.Contains(st.Kernel.Fix, "smtpguard disable") || len(st.Kernel.Present) != 1 {
		t.Errorf("status --json: exit %d, kernel %+v; want exit 1, state policy missing, the fix and the backend present", r.code, st.Kernel)
	}
	if r := h.run("allow", "user", "alice"); r.code != ExitFailure || !strings.Contains(r.stderr, "holds no policy") {
		t.Errorf("allow on a lost database: exit %d, stderr %q; want a refusal", r.code, r.stderr)
	}
	if h.backend.Installed() == nil {
		t.Fatal("the rules left the kernel before disable")
	}
	h.ok("disable")
	if h.backend.Installed() != nil {
		t.Error("disable left the rules in the kernel")
	}
	if r := h.run("status"); r.code != ExitOK || !strings.Contains(r.stdout, "not enforcing") {
		t.Errorf("status after disable: exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

func TestStatusShowsLeftoversOfADisabledPolicy(t *testing.T) {
	h := newHarness(t)
	h.ok("enable", "--backend", "fake")
	h.ok("disable")
	h.backend.Apply(context.Background(), policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}})
	r := h.run("status")
	if r.code != ExitOK || !strings.Contains(r.stdout, "leftovers") || strings.Contains(r.stdout, "not enforcing") ||
		!strings.Contains(r.stdout, "still in the kernel") {
		t.Errorf("status: exit %d, stdout:\n%s\nwant the leftovers reported", r.code, r.stdout)
	}
	var st kernelJSON
	json.Unmarshal([]byte(h.ok("status", "--json")), &st)
	if st.Kernel.State != "leftovers" || st.Kernel.Fix == "" {
		t.Errorf("status --json kernel = %+v, want leftovers with a fix", st.Kernel)
	}
}

// An untrusted state directory stops every command with exit 1 and a line
// saying what is wrong.
func TestUntrustedStateDirectoryIsRefused(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"writable by everyone", func(t *testing.T, dir string) { os.Chmod(dir, 0o777) }, "writable by"},
		{"planted database link", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "smtpguard.db"))
			os.Symlink(filepath.Join(t.TempDir(), "victim.db"), filepath.Join(dir, "smtpguard.db"))
		}, "symbolic link"},
		{"planted lock link", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "lock"))
			os.Symlink(filepath.Join(t.TempDir(), "victim"), filepath.Join(dir, "lock"))
		}, "symbolic link"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok("enable", "--backend", "fake")
			tt.setup(t, h.stateDir)
			for _, args := range [][]string{{"status"}, {"allow", "user", "alice"}} {
				r := h.run(args...)
				if r.code != ExitFailure || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
					t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line containing %q", strings.Join(args, " "), r.code, r.stderr, tt.want)
				}
			}
		})
	}
}

func TestExportToStandardOutputByName(t *testing.T) {
	h := newHarness(t)
	h.ok("allow", "user", "alice")
	want := h.ok("export")
	for _, out := range []string{"-", "/dev/stdout"} {
		if got := h.ok("export", "-o", out); got != want {
			t.Errorf("export -o %s wrote %q to stdout, want %q", out, got, want)
		}
	}
}
