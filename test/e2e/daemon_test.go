//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

const metricsAddr = "127.0.0.1:9725"

// daemon is a running "smtpguard serve" inside the client namespace.
type daemon struct {
	*testutil.Proc
}

func (w *world) startDaemon(t *testing.T, extra ...string) *daemon {
	t.Helper()
	d := w.spawnDaemon(t, extra...)
	w.waitUntil(t, "the daemon serves /metrics", 5*time.Second, func() bool {
		_, err := w.metrics()
		return err == nil
	})
	return d
}

// waitUntil polls cond until it holds or the bound passes.
func (w *world) waitUntil(t *testing.T, what string, bound time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			t.Fatalf("%s did not happen within %v", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// metrics scrapes the daemon's /metrics from inside the client namespace.
func (w *world) metrics() (map[string]float64, error) {
	return w.client.Metrics(metricsAddr)
}

func (w *world) blocked(u *testutil.User, addr string) bool {
	r := testutil.ConnectAs(w.t, w.client, u, addr)[0]
	return !r.OK && r.Errno == "ECONNREFUSED"
}

type event struct {
	UID         uint32 `json:"uid"`
	User        string `json:"user"`
	Destination string `json:"destination"`
	Port        int    `json:"port"`
	Count       int    `json:"count"`
	Action      string `json:"action"`
}

func TestPrivilegedDaemon(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	w.sgOK("allow", "group", w.group)
	// Repair is what keeps the rules on kernels without owned tables
	// (before Linux 6.9, Debian 12's 6.1 among them); TestPrivilegedDaemonOwnsItsTable
	// covers the owned table.
	d := w.startDaemon(t, "--own-table=false")

	t.Run("a flushed ruleset is restored at once", func(t *testing.T) {
		w.t = t
		w.client.Exec(t, "nft", "flush", "ruleset")
		took := w.waitUntil(t, "the block returns after nft flush ruleset", time.Second, func() bool {
			return w.blocked(&w.plain, testutil.HostPort("192.0.2.2", 25))
		})
		t.Logf("enforcement restored %v after the flush", took)
		w.expectBlocked(&w.plain, remote(25)...)
		if st := w.status(); st.Kernel.State != "in sync" {
			t.Errorf("status after repair: kernel %q, want in sync", st.Kernel.State)
		}
		// The repair is in the audit log, as the daemon's (issue 16).
		w.waitUntil(t, "the repair appears in audit --json", 5*time.Second, func() bool {
			var recs []struct{ Actor, Operation, Detail string }
			if err := json.Unmarshal([]byte(w.sgOK("audit", "--json")), &recs); err != nil {
				t.Fatalf("audit --json: %v", err)
			}
			for _, r := range recs {
				if r.Actor == "daemon" && r.Operation == "repair" && strings.HasPrefix(r.Detail, "nft rules restored: ") {
					return true
				}
			}
			return false
		})
	})
	t.Run("blocked attempts are attributed to the user", func(t *testing.T) {
		w.t = t
		w.expectBlocked(&w.plain, testutil.HostPort("192.0.2.2", 25), testutil.HostPort("2001:db8::2", 587))
		var got []event
		w.waitUntil(t, "the attempts appear in events --json", 2*time.Second, func() bool {
			got = nil
			if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &got); err != nil {
				t.Fatalf("events --json: %v", err)
			}
			var v4, v6 bool
			for _, e := range got {
				if e.UID != w.plain.UID || e.User != w.plain.Name || e.Action != "blocked" {
					continue
				}
				v4 = v4 || (e.Destination == "192.0.2.2" && e.Port == 25)
				v6 = v6 || (e.Destination == "2001:db8::2" && e.Port == 587)
			}
			return v4 && v6
		})
		for _, e := range got {
			if e.UID == 0 || e.UID == w.supp.UID || e.UID == w.primary.UID {
				t.Errorf("an allowed user was recorded as blocked: %+v", e)
			}
		}
		if out := w.sgOK("events"); !strings.Contains(out, w.plain.Name) {
			t.Errorf("events table lacks %s:\n%s", w.plain.Name, out)
		}
	})
	t.Run("metrics count blocked attempts and repairs", func(t *testing.T) {
		w.t = t
		key := fmt.Sprintf(`smtpguard_blocked_attempts_total{action="blocked",user=%q}`, w.plain.Name)
		before, err := w.metrics()
		if err != nil {
			t.Fatal(err)
		}
		if before["smtpguard_drift_repairs_total"] < 1 || before["smtpguard_enabled"] != 1 {
			t.Errorf("metrics = %v, want enabled and at least one repair", before)
		}
		w.expectBlocked(&w.plain, testutil.HostPort("192.0.2.2", 465))
		w.client.Exec(t, "nft", "delete", "table", "inet", "smtpguard")
		w.waitUntil(t, "both counters increase", 2*time.Second, func() bool {
			after, err := w.metrics()
			return err == nil && after[key] > before[key] && after["smtpguard_drift_repairs_total"] > before["smtpguard_drift_repairs_total"]
		})
	})
	t.Run("a flood of attempts is counted, never silently lost, in bounded memory", func(t *testing.T) {
		w.t = t
		const attempts = 3000 // bounded: one helper process, about 0.2 s of refused connects
		addrs := make([]string, attempts)
		for i := range addrs {
			addrs[i] = testutil.HostPort("192.0.2.3", 587) // a destination no other subtest here uses
		}
		before, err := w.metrics()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range testutil.ConnectAs(t, w.client, &w.plain, addrs...) {
			if r.OK {
				t.Fatalf("flood connect succeeded: %s", r)
			}
		}
		recorded := func() int {
			var evs []event
			json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs)
			n := 0
			for _, e := range evs {
				if e.Destination == "192.0.2.3" && e.UID == w.plain.UID {
					n += e.Count
				}
			}
			return n
		}
		dropped := func(m map[string]float64) float64 {
			var sum float64
			for k, v := range m {
				if strings.HasPrefix(k, "smtpguard_events_dropped_total") {
					sum += v
				}
			}
			return sum
		}
		var got int
		var after map[string]float64
		w.waitUntil(t, "the flood to be accounted for", 5*time.Second, func() bool {
			got = recorded()
			after, err = w.metrics()
			return err == nil && (got == attempts || (got > 0 && dropped(after) > dropped(before)))
		})
		t.Logf("%d attempts: %d recorded, %v dropped", attempts, got, dropped(after)-dropped(before))
		if got > attempts {
			t.Errorf("recorded %d attempts, more than the %d made", got, attempts)
		}
		rss := processRSS(t, d.Cmd.Process.Pid)
		t.Logf("daemon resident memory after the flood: %.1f MiB", rss/(1<<20))
		if rss > 64<<20 {
			t.Errorf("daemon resident memory %.1f MiB after the flood, want under 64", rss/(1<<20))
		}
	})
	t.Run("joining an allowed group takes effect without restart", func(t *testing.T) {
		w.t = t
		w.expectBlocked(&w.plain, testutil.HostPort("192.0.2.2", 25))
		testutil.AddToGroup(t, &w.plain, w.group)
		w.waitUntil(t, "the new group member is allowed", 3*time.Second, func() bool {
			return testutil.ConnectAs(t, w.client, &w.plain, testutil.HostPort("192.0.2.2", 25))[0].OK
		})
		w.expectReach(&w.plain, remote(25)...)
	})
	t.Run("kill -9 leaves the restriction in force; a restart converges without duplicates", func(t *testing.T) {
		w.t = t
		stranger := testutil.NewUser(t, "strg", "")
		before := ruleComments(w.kernelTable())
		d.Kill()
		w.expectBlocked(&stranger, remote(25)...)
		w.startDaemon(t)
		if after := ruleComments(w.kernelTable()); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("rules after restart %v, before %v: want the same rules, none duplicated:\n%s", after, before, w.kernelTable())
		}
		if st := w.status(); st.Kernel.State != "in sync" {
			t.Errorf("status after restart: kernel %q, want in sync", st.Kernel.State)
		}
		w.expectBlocked(&stranger, remote(587)...)
		w.expectReach(&w.plain, remote(25)...)
	})
}

// processRSS reads a process's resident set size in bytes.
func processRSS(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// ruleComments lists the fingerprint comments of smtpguard's rules in order.
func ruleComments(table string) []string {
	var out []string
	for _, f := range strings.Split(table, `comment "smtpguard `)[1:] {
		out = append(out, f[:8])
	}
	return out
}

// ownedTable reports whether nft lists the table with the owner flag (nft
// 1.0.6 names "owner" but prints persist as an unnamed flag).
func ownedTable(listing string) bool {
	for _, line := range strings.Split(listing, "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "flags "); ok && strings.Contains(f, "owner") {
			return true
		}
	}
	return false
}

// While the daemon runs it owns its table (Linux 6.9+): another process's
// flush or delete cannot lift the restriction even for the milliseconds a
// repair takes, the CLI's changes reach the kernel through the daemon, and a
// stopped daemon leaves the table enforcing for the next one to take over.
func TestPrivilegedDaemonOwnsItsTable(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	d := w.startDaemon(t)
	w.waitUntil(t, "the daemon owns its table", 5*time.Second, func() bool {
		return ownedTable(w.kernelTable())
	})

	w.client.Exec(t, "nft", "flush", "ruleset")
	if !w.blocked(&w.plain, testutil.HostPort("192.0.2.2", 25)) {
		t.Errorf("after a foreign nft flush ruleset, %s reached port 25", w.plain.Name)
	}
	if out, err := w.client.Command("nft", "delete", "table", "inet", "smtpguard").CombinedOutput(); err == nil || !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("foreign nft delete table inet smtpguard = %v %s, want refused with EPERM", err, out)
	}
	if st := w.status(); st.Kernel.State != "in sync" {
		t.Errorf("status with the daemon owning the table: kernel %q, want in sync", st.Kernel.State)
	}

	w.sgOK("allow", "user", w.plain.Name)
	w.expectReach(&w.plain, testutil.HostPort("192.0.2.2", 25))
	w.sgOK("revoke", "user", w.plain.Name)
	w.expectBlocked(&w.plain, testutil.HostPort("192.0.2.2", 25))

	d.Stop()
	if table := w.kernelTable(); table == "" || ownedTable(table) {
		t.Fatalf("after the daemon stopped the table should stay, orphaned and persistent:\n%s", table)
	}
	w.expectBlocked(&w.plain, testutil.HostPort("192.0.2.2", 25))
	w.sgOK("allow", "user", w.plain.Name) // no daemon: the CLI changes the orphaned table itself
	w.expectReach(&w.plain, testutil.HostPort("192.0.2.2", 25))
	w.startDaemon(t)
	w.waitUntil(t, "the restarted daemon takes the table over", 5*time.Second, func() bool {
		return ownedTable(w.kernelTable())
	})
	w.sgOK("disable")
	if table := w.kernelTable(); table != "" {
		t.Errorf("disable through the daemon left:\n%s", table)
	}
}
