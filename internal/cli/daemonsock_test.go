package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/enforce/remote"
)

// serveInProcess runs "serve --listen ”" (and extra flags) on the
// harness's state directory with its own backend, the daemon's kernel,
// until stop is called.
func (h *harness) serveInProcess(t *testing.T, extra ...string) (kernel *fake.Backend, stop func()) {
	t.Helper()
	kernel = fake.New("fake")
	opts := h.opts
	opts.ServeBackends = func(*slog.Logger, bool) []enforce.Backend { return []enforce.Backend{kernel} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- RunWith(ctx, append([]string{"--state-dir", h.stateDir, "serve", "--listen", ""}, extra...),
			Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}, opts)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if info, err := remote.Ping(ctx, remote.SocketPath(h.stateDir)); err == nil && info.Recording {
			break // converged, and reading events
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d before answering on its socket", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not answer on its socket, recording, within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited with %d", code)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s")
		}
	}
	t.Cleanup(stop)
	return kernel, stop
}

func TestCommandsGoThroughTheRunningDaemon(t *testing.T) {
	h := newHarness(t)
	kernel, stop := h.serveInProcess(t)

	for _, args := range [][]string{{"enable", "--backend", "fake"}, {"allow", "user", "alice"}} {
		if r := h.run(args...); r.code != 0 {
			t.Fatalf("smtpguard %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	if got := kernel.Installed(); got == nil || !slices.Contains(got.UIDs, 1001) {
		t.Errorf("daemon's kernel = %+v, want alice (1001) allowed", got)
	}
	if calls := h.backend.Calls(); len(calls) != 0 {
		t.Errorf("the command used its own backend while the daemon runs: %v", calls)
	}

	r := h.run("status", "--json")
	var st struct {
		Enabled bool `json:"enabled"`
		Kernel  struct {
			State string `json:"state"`
		} `json:"kernel"`
		Daemon daemonState `json:"daemon"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v: %s", err, r.stdout)
	}
	if want := (daemonState{Running: true, PID: os.Getpid(), Recording: true}); st.Daemon != want || !st.Enabled || st.Kernel.State != "in sync" {
		t.Errorf("status --json = %+v, want enabled, in sync, daemon %+v", st, want)
	}
	if r := h.run("status"); !strings.Contains(r.stdout, "running (pid ") || !strings.Contains(r.stdout, "recording blocked attempts") {
		t.Errorf("status does not say the daemon runs and records:\n%s", r.stdout)
	}
	if r := h.run("events"); strings.Contains(r.stderr, "warning") {
		t.Errorf("events warns while the daemon records: %s", r.stderr)
	}

	// Without the daemon the command works on the kernel directly, and says
	// what is not happening.
	stop()
	before := len(kernel.Calls())
	if r := h.run("allow", "user", "bob"); r.code != 0 {
		t.Fatalf("allow without a daemon: exit %d: %s", r.code, r.stderr)
	}
	if !slices.Contains(h.backend.Calls(), "apply") || len(kernel.Calls()) != before {
		t.Errorf("without a daemon: own backend %v, daemon's backend got %v; want the command's own backend used",
			h.backend.Calls(), kernel.Calls()[before:])
	}
	r = h.run("events")
	if r.code != 0 || !strings.Contains(r.stderr, "no daemon is running, so blocked attempts are not being recorded: systemctl start smtpguard") {
		t.Errorf("events without a daemon: exit %d, stderr %q; want a warning", r.code, r.stderr)
	}
	r = h.run("status", "--json")
	st.Daemon = daemonState{Running: true}
	json.Unmarshal([]byte(r.stdout), &st)
	if st.Daemon != (daemonState{}) || !strings.Contains(r.stdout, `"daemon": {`) {
		t.Errorf("status --json without a daemon: daemon = %+v, want not running:\n%s", st.Daemon, r.stdout)
	}
	if r := h.run("status"); !strings.Contains(r.stdout, "not running: blocked attempts are not recorded") {
		t.Errorf("status without a daemon does not say so:\n%s", r.stdout)
	}
}

func TestASecondServeOnTheStateDirExits1NamingThePID(t *testing.T) {
	h := newHarness(t)
	h.serveInProcess(t)
	r := h.run("serve", "--listen", "")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "pid "+strconv.Itoa(os.Getpid())) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("second serve: exit %d, stderr %q; want exit 1 and one line naming pid %d", r.code, r.stderr, os.Getpid())
	}
}

func TestMetricsTokenFile(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good"
	os.WriteFile(good, []byte("0123456789abcdef0123\nignored\n"), 0o600)
	short := dir + "/short"
	os.WriteFile(short, []byte("secret\n"), 0o600)
	if tok, err := readMetricsToken(good); err != nil || tok != "0123456789abcdef0123" {
		t.Errorf("readMetricsToken(good) = %q, %v", tok, err)
	}
	if _, err := readMetricsToken(short); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("readMetricsToken(short) = %v, want a refusal that does not echo the file", err)
	}
	if _, err := readMetricsToken(dir + "/missing"); err == nil {
		t.Error("readMetricsToken(missing) = nil error")
	}
	// A token every user can read lets every user read /metrics.
	open := dir + "/world-readable"
	os.WriteFile(open, []byte("0123456789abcdef0123\n"), 0o644)
	if _, err := readMetricsToken(open); err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "0123456789abcdef") {
		t.Errorf("readMetricsToken(mode 0644) = %v, want a refusal naming chmod 600 that does not echo the token", err)
	}
}
