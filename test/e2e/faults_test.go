//go:build linux

package e2e

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/store"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// TestPrivilegedKillDuringApply kills the CLI at random points while it
// changes the policy, again and again (bounded), and then requires that the
// database is intact and the stored policy and the kernel agree, or that the
// next command repairs them.
func TestPrivilegedKillDuringApply(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 20
	killed := 0
	for i := range rounds {
		args := []string{"allow", "user", w.plain.Name}
		if i%2 == 1 {
			args = []string{"revoke", "user", w.plain.Name}
		}
		if i%5 == 4 {
			args = []string{"set", "ports", []string{"25,465,587", "25,465,587,2525"}[i%2]}
		}
		cmd := w.client.Command(binary, append([]string{"--state-dir", w.stateDir}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		proc := testutil.Watch(cmd)
		select {
		case <-proc.Done():
		case <-time.After(time.Duration(20+rng.IntN(130)) * time.Millisecond):
			proc.Kill() // our own child, by pid
			killed++
		}
		// Whatever happened, the state must be consistent or repairable.
		st := w.status()
		if st.Kernel.State != "in sync" {
			w.sgOK("enable", "--backend", "nft")
			if st = w.status(); st.Kernel.State != "in sync" {
				t.Fatalf("round %d (%s): kernel %q after a repairing enable", i, strings.Join(args, " "), st.Kernel.State)
			}
		}
		allowed := len(st.AllowedUsers) == 1
		r := testOne(t, w, allowed)
		if r != "" {
			t.Fatalf("round %d (%s): %s", i, strings.Join(args, " "), r)
		}
	}
	t.Logf("%d of %d commands killed mid-way", killed, rounds)
	s, err := store.Open(context.Background(), filepath.Join(w.stateDir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(context.Background()); err != nil {
		t.Errorf("database after %d kills: %v", killed, err)
	}
	w.sgOK("disable")
}

// testOne checks that the kernel does what the stored policy says for plain.
func testOne(t *testing.T, w *world, allowed bool) string {
	w.t = t
	r := connectOne(t, w)
	switch {
	case allowed && !r.OK:
		return "the policy allows " + w.plain.Name + " but the kernel refuses: " + r.String()
	case !allowed && r.OK:
		return "the policy blocks " + w.plain.Name + " but the kernel lets it through"
	}
	return ""
}

func connectOne(t *testing.T, w *world) testutil.ConnectResult {
	return testutil.ConnectAs(t, w.client, &w.plain, "192.0.2.2:25")[0]
}

// sgIn runs smtpguard in the client namespace and a private mount namespace
// after the given shell setup (mounts there vanish with the process).
func (w *world) sgIn(t *testing.T, setup string, args ...string) cmdResult {
	t.Helper()
	script := setup + ` && exec "$0" "$@"`
	return run(t, w.client.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, binary, "--state-dir", w.stateDir}, args...)...))
}

func TestPrivilegedBadStateDirChangesNothing(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	beforeStatus, beforeTable := w.sgOK("export"), w.kernelTable()
	unchanged := func(t *testing.T, r cmdResult, want string) {
		t.Helper()
		if r.code == 0 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("exit %d, stderr %q; want a one-line error containing %q", r.code, r.stderr, want)
		}
		if after := w.sgOK("export"); after != beforeStatus {
			t.Errorf("stored policy changed:\n%s", after)
		}
		if after := w.kernelTable(); after != beforeTable {
			t.Errorf("kernel rules changed:\n%s\nwas:\n%s", after, beforeTable)
		}
		w.expectBlocked(&w.plain, "192.0.2.2:25")
	}
	t.Run("read-only state directory", func(t *testing.T) {
		w.t = t
		sd := w.stateDir
		r := w.sgIn(t, "mount --bind "+sd+" "+sd+" && mount -o remount,bind,ro "+sd, "allow", "user", w.plain.Name)
		unchanged(t, r, "read-only file system")
	})
	t.Run("full state directory", func(t *testing.T) {
		w.t = t
		sd := w.stateDir
		// A tiny tmpfs over a copy of the state, filled to the last byte.
		setup := "cp -a " + sd + " " + sd + ".copy && mount -t tmpfs -o size=2m tmpfs " + sd +
			" && cp -a " + sd + ".copy/. " + sd + " && rm -rf " + sd + ".copy && (dd if=/dev/zero of=" + sd + "/filler bs=64k 2>/dev/null; true)"
		r := w.sgIn(t, setup, "allow", "user", w.plain.Name)
		unchanged(t, r, "full")
	})
	t.Run("database locked by another process", func(t *testing.T) {
		w.t = t
		db, err := sql.Open("sqlite", filepath.Join(w.stateDir, store.FileName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
			t.Fatal(err)
		}
		r := w.sg("allow", "user", w.plain.Name) // waits for the busy timeout (10 s), then gives up
		conn.ExecContext(context.Background(), "ROLLBACK")
		unchanged(t, r, "locked")
	})
}

// TestPrivilegedKillDaemonDuringApply kills `smtpguard serve` with SIGKILL at
// random points while it converges at start, repairs a flushed ruleset or
// follows a policy change, again and again (bounded). Stopping the daemon
// must never open the gate it had closed, and a restarted daemon must bring
// the kernel back to the stored policy; the database stays intact.
func TestPrivilegedKillDaemonDuringApply(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	const rounds = 12
	leftBroken := 0
	for i := range rounds {
		cmd := w.client.Command(binary, "--state-dir", w.stateDir, "serve", "--listen", "", "--verify-interval", "1s", "--backend", "nft")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		proc := testutil.Watch(cmd)
		flushed := false
		switch i % 3 {
		case 0: // killed while converging at start
		case 1: // killed while repairing a flushed ruleset
			time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
			if out, err := w.client.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
				t.Fatalf("nft flush ruleset: %v\n%s", err, out)
			}
			flushed = true
		case 2: // killed while following a change made with the CLI
			time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
			w.sgOK([]string{"allow", "revoke"}[rng.IntN(2)], "user", w.plain.Name)
		}
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		proc.Kill() // our own child, by pid

		st := w.status()
		if !flushed && st.Kernel.State != "in sync" {
			t.Fatalf("round %d: kernel %q right after the daemon was killed; a dead daemon must leave the rules as they were", i, st.Kernel.State)
		}
		if r := testOne(t, w, len(st.AllowedUsers) == 1); r != "" && !flushed {
			t.Fatalf("round %d, right after the kill: %s", i, r)
		}
		if st.Kernel.State != "in sync" {
			leftBroken++
		}
		// The next daemon repairs whatever the killed one left.
		d := w.startDaemon(t)
		w.waitUntil(t, "the restarted daemon converges", 5*time.Second, func() bool { return w.status().Kernel.State == "in sync" })
		if r := testOne(t, w, len(w.status().AllowedUsers) == 1); r != "" {
			t.Fatalf("round %d, after the restart: %s", i, r)
		}
		d.Stop()
	}
	t.Logf("%d of %d kills came before the daemon had repaired a flush; the restart repaired them", leftBroken, rounds)
	s, err := store.Open(context.Background(), filepath.Join(w.stateDir, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.IntegrityCheck(context.Background()); err != nil {
		t.Errorf("database after %d daemon kills: %v", rounds, err)
	}
	w.sgOK("disable")
}
