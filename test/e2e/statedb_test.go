//go:build linux

package e2e

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// spawnDaemon starts "smtpguard serve" without waiting for it to serve
// metrics: a daemon whose database cannot be read answers only /healthz.
func (w *world) spawnDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	args := append([]string{"--state-dir", w.stateDir, "serve", "--listen", metricsAddr, "--verify-interval", "5s", "--backend", "nft"}, extra...)
	testutil.RefuseRootAttach(t, args...)
	cmd := w.client.Command(binary, args...)
	logs := &strings.Builder{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	d := &daemon{testutil.Watch(cmd)}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	return d
}

// healthz fetches the daemon's /healthz from inside the client namespace.
func (w *world) healthz() (code int, body string, err error) {
	client := w.client.HTTPClient(2 * time.Second)
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + metricsAddr + "/healthz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// A deleted, emptied or damaged smtpguard.db must not lift the restriction:
// SQLite opens a missing or empty file as a new database whose default
// policy is disabled, and the daemon used to delete table inet smtpguard at
// start. The rules stay, status and /healthz say so with the fix, and only
// an explicit disable removes them.
func TestPrivilegedLostDatabaseKeepsEnforcing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		damage  func(t *testing.T, db string)
		corrupt bool
	}{
		{"emptied", func(t *testing.T, db string) {
			os.Remove(db + "-wal")
			os.Remove(db + "-shm")
			if err := os.Truncate(db, 0); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"deleted", func(t *testing.T, db string) {
			for _, p := range []string{db, db + "-wal", db + "-shm"} {
				os.Remove(p)
			}
		}, false},
		{"damaged", func(t *testing.T, db string) {
			os.Remove(db + "-wal")
			os.Remove(db + "-shm")
			if err := os.WriteFile(db, []byte(strings.Repeat("this is not a database\n", 300)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			w.sgOK("enable", "--backend", "nft")
			w.startDaemon(t).Stop()
			db := filepath.Join(w.stateDir, "smtpguard.db")
			tt.damage(t, db)

			d := w.spawnDaemon(t)
			w.waitUntil(t, "the restarted daemon answers /healthz", 10*time.Second, func() bool {
				_, _, err := w.healthz()
				return err == nil
			})
			if w.kernelTable() == "" {
				t.Fatalf("table inet smtpguard is gone after the daemon started on the %s database: the restriction was lifted without 'smtpguard disable'", tt.name)
			}
			w.expectBlocked(&w.plain, remote(25)...)
			if code, body, _ := w.healthz(); code != 503 || !strings.Contains(body, "from a backup") || !strings.Contains(body, "smtpguard disable") {
				t.Errorf("/healthz = %d %s; want 503 with the fix (restore from a backup, or smtpguard disable)", code, body)
			}
			select {
			case <-d.Done():
				t.Fatal("the daemon exited; it must keep running and report the problem")
			default:
			}

			r := w.sg("status")
			t.Logf("status on a %s database: exit %d\n%s%s", tt.name, r.code, r.stdout, r.stderr)
			if r.code != 1 || !strings.Contains(r.stderr, "from a backup") || !strings.Contains(r.stderr, "smtpguard disable") {
				t.Errorf("status: exit %d, stderr %q; want exit 1 and the fix", r.code, r.stderr)
			}
			if !tt.corrupt {
				if !strings.Contains(r.stdout, "policy missing") {
					t.Errorf("status stdout lacks the kernel state \"policy missing\":\n%s", r.stdout)
				}
				r = w.sg("status", "--json")
				var st status
				if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 1 || st.Kernel.State != "policy missing" {
					t.Errorf("status --json: exit %d, kernel %q (%v); want exit 1 and \"policy missing\"", r.code, st.Kernel.State, err)
				}
				if r := w.sg("allow", "user", w.plain.Name); r.code == 0 {
					t.Error("allow on a database without a policy succeeded; it would store a disabled policy")
				}
			} else {
				// The fix the message gives: move the damaged file away, then disable.
				if err := os.Rename(db, db+".damaged"); err != nil {
					t.Fatal(err)
				}
			}
			w.expectBlocked(&w.plain, remote(25)...)
			w.sgOK("disable")
			if tbl := w.kernelTable(); tbl != "" {
				t.Errorf("table inet smtpguard still there after disable:\n%s", tbl)
			}
			w.expectReach(&w.plain, remote(25)...)
		})
	}
}

// status of a disabled policy used to say "not enforcing" without looking at
// the kernel. Rules left behind (here: put back with nft after disable, as a
// crash between the database and the kernel would leave them) still refuse
// users, and status must say so.
func TestPrivilegedStatusReportsLeftovers(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	saved, err := w.client.Command("nft", "list", "table", "inet", "smtpguard").Output()
	if err != nil {
		t.Fatal(err)
	}
	w.sgOK("disable")
	load := w.client.Command("nft", "-f", "-")
	load.Stdin = strings.NewReader(string(saved))
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("nft -f (restore the table as a leftover): %v\n%s", err, out)
	}
	w.expectBlocked(&w.plain, remote(25)...)

	r := w.sg("status")
	if r.code != 0 || !strings.Contains(r.stdout, "leftovers") || strings.Contains(r.stdout, "not enforcing") || !strings.Contains(r.stdout, "smtpguard disable") {
		t.Errorf("status with leftover rules: exit %d, stdout:\n%s\nwant the leftovers and the fix", r.code, r.stdout)
	}
	if st := w.status(); st.Kernel.State != "leftovers" {
		t.Errorf("status --json kernel state = %q, want leftovers", st.Kernel.State)
	}
	w.sgOK("disable")
	if st := w.status(); st.Kernel.State != "not enforcing" {
		t.Errorf("status --json after disable: kernel %q, want not enforcing", st.Kernel.State)
	}
	w.expectReach(&w.plain, remote(25)...)
}
