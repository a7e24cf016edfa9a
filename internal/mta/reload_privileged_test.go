//go:build linux

package mta

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// withStartupWork makes the private daemon do what a real Exim does after
// it binds its sockets and before it serves: with TLS advertised and no
// tls_certificate, Exim 4.96 generates a self-signed certificate at start.
// The configuration is reloaded so the running daemon has it too.
func withStartupWork(t *testing.T, d *eximDaemon) {
	t.Helper()
	cfg, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), "tls_advertise_hosts =\n", "tls_advertise_hosts = *\n", 1)
	if s == string(cfg) {
		t.Fatal("test configuration has no empty tls_advertise_hosts to replace")
	}
	if err := os.WriteFile(d.config, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	// Signalled here, not through the code under test: SIGHUP, a new
	// socket, then a greeting, which proves the main loop runs.
	before := listeningSockets("/proc", d.pid)
	if err := syscall.Kill(d.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for bound := false; !bound; {
		for ino := range listeningSockets("/proc", d.pid) {
			bound = bound || !before[ino]
		}
		if !bound && time.Now().After(deadline) {
			t.Fatal("exim did not listen again within 10s of SIGHUP")
		}
		time.Sleep(5 * time.Millisecond)
	}
	d.openSessions(t, 1)()
}

// inMainLoopWait reports whether a stopped pid was waiting for events when
// it stopped: /proc/PID/syscall names poll, ppoll, select or pselect6
// (x86-64 and arm64 numbers), the calls of Exim's main loop.
func inMainLoopWait(t *testing.T, pid int) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "syscall"))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return false
	}
	switch f[0] {
	case "7", "271", "23", "270", "73", "72": // x86-64 poll ppoll select pselect6; arm64 ppoll pselect6
		return true
	}
	return false
}

// stopInStartup signals the daemon to re-execute and freezes the new image
// with SIGSTOP as soon as it has bound its sockets, while it still does its
// start-up work, i.e. before its main loop, where a SIGHUP is noticed. A
// freeze that landed in the main loop's wait is thawed and tried again.
func stopInStartup(t *testing.T, d *eximDaemon) {
	t.Helper()
	const attempts = 20
	for attempt := 1; attempt <= attempts; attempt++ {
		before := listeningSockets("/proc", d.pid)
		if len(before) == 0 {
			t.Fatal("the private exim listens nowhere")
		}
		if err := syscall.Kill(d.pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		bound := false
		for !bound {
			for ino := range listeningSockets("/proc", d.pid) {
				if !before[ino] {
					bound = true
				}
			}
			if !bound && time.Now().After(deadline) {
				t.Fatal("exim did not listen again within 10s of SIGHUP")
			}
		}
		if err := syscall.Kill(d.pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitState(t, d.pid, 'T')
		if !inMainLoopWait(t, d.pid) {
			t.Logf("exim frozen in its start-up at attempt %d", attempt)
			return
		}
		// Too late: it reached its main loop. Let it serve and try again.
		syscall.Kill(d.pid, syscall.SIGCONT)
		d.greeting(t)
	}
	t.Fatalf("could not freeze exim inside its start-up in %d attempts", attempts)
}

// waitState waits up to 5 s for pid's state letter in /proc/PID/stat.
func waitState(t *testing.T, pid int, want byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not in state %c within 5s: %s", pid, want, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// hangupPending reports whether SIGHUP waits for delivery to pid.
func hangupPending(t *testing.T, pid int) bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		for _, field := range []string{"ShdPnd:", "SigPnd:"} {
			if v, ok := strings.CutPrefix(line, field); ok {
				if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&1 != 0 {
					return true
				}
			}
		}
	}
	return false
}

// A change made while Exim is still starting up (just after a restart or an
// earlier change) must still reach the daemon: the SIGHUP it gets then is
// only noticed at the next connection, so one signal and a wait for a new
// socket timed out, and the change was rolled back.
func TestPrivilegedEximReloadDuringStartup(t *testing.T) {
	testutil.Privileged(t)
	bin := requireExim(t)
	d := startEximDaemon(t, bin)
	withStartupWork(t, d)
	ctx := t.Context()
	m, err := NewManager(ctx, bin.options(Options{EximConfig: d.config}), systemDirectory(t))
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}

	stopInStartup(t, d)
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			syscall.Kill(d.pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(thaw)

	done := make(chan error, 1)
	go func() {
		_, err := m.SetLimits(ctx, Limits{MaxConnections: 2})
		done <- err
	}()
	// Thaw exim once the manager's SIGHUP waits for it.
	deadline := time.Now().Add(10 * time.Second)
	for !hangupPending(t, d.pid) {
		select {
		case err := <-done:
			t.Fatalf("SetLimits returned %v before signalling the frozen exim", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the manager sent no SIGHUP within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	thaw()

	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SetLimits(max 2) during exim's start-up: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("SetLimits did not return within 30s")
	}
	if got := eximReports(t, bin, d.config); got.MaxConnections != 2 {
		t.Errorf("exim -bP max connections = %d, want 2", got.MaxConnections)
	}
	// The daemon itself runs the new limit: two sessions, then a refusal.
	closeAll := d.openSessions(t, 2)
	defer closeAll()
	if g := d.greeting(t); !strings.HasPrefix(g, "421") {
		t.Errorf("third session greeting = %q, want Exim's 421 refusal under the new limit", g)
	}
}

// Back-to-back changes each land while Exim is still starting up from the
// previous one; every one must succeed (4 of 10 failed with one SIGHUP).
func TestPrivilegedEximBackToBackChanges(t *testing.T) {
	testutil.Privileged(t)
	bin := requireExim(t)
	d := startEximDaemon(t, bin)
	withStartupWork(t, d)
	ctx := t.Context()
	m, err := NewManager(ctx, bin.options(Options{EximConfig: d.config}), systemDirectory(t))
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	for i := range 10 {
		want := 3 + i%2
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := m.SetLimits(callCtx, Limits{MaxConnections: want})
		cancel()
		if err != nil {
			t.Fatalf("change %d of 10 (max %d): %v", i+1, want, err)
		}
		if got := eximReports(t, bin, d.config); got.MaxConnections != want {
			t.Fatalf("change %d: exim -bP max connections = %d, want %d", i+1, got.MaxConnections, want)
		}
	}
	if g := d.greeting(t); !strings.HasPrefix(g, "220") {
		t.Errorf("greeting after 10 changes = %q, want 220", g)
	}
	// The last change (max 4) is in force in the daemon.
	closeAll := d.openSessions(t, 4)
	defer closeAll()
	if g := d.greeting(t); !strings.HasPrefix(g, "421") {
		t.Errorf("fifth session greeting = %q, want Exim's 421 refusal under max 4", g)
	}
}
