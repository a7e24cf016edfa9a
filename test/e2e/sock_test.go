//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

type daemonStatus struct {
	Running   bool `json:"running"`
	PID       int  `json:"pid"`
	Recording bool `json:"recording"`
}

func (w *world) daemonStatus(r cmdResult) (kernel string, d daemonStatus) {
	w.t.Helper()
	var st struct {
		Kernel struct {
			State string `json:"state"`
		} `json:"kernel"`
		Daemon *daemonStatus `json:"daemon"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Daemon == nil {
		w.t.Fatalf("status --json: %v, no daemon key? exit %d:\n%s%s", err, r.code, r.stdout, r.stderr)
	}
	return st.Kernel.State, *st.Daemon
}

// TestPrivilegedCLIChangesGoThroughTheDaemon: with a daemon running, a CLI
// that cannot open a netfilter socket at all still allows and revokes users,
// because the daemon changes the kernel for it; without a daemon (also after
// kill -9, which leaves the socket file behind) the CLI works directly.
func TestPrivilegedCLIChangesGoThroughTheDaemon(t *testing.T) {
	if _, ok := auditArch(); !ok {
		t.Skipf("the seccomp filter of this test knows amd64 and arm64, not %s", runtime.GOARCH)
	}
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	d := w.startDaemon(t)
	w.expectBlocked(&w.plain, remote(25)...)

	if r := w.sgWithoutNetfilter("allow", "user", w.plain.Name); r.code != 0 {
		t.Fatalf("allow without netfilter while the daemon runs: exit %d: %s", r.code, r.stderr)
	}
	w.expectReach(&w.plain, remote(25)...)
	var kernel string
	var ds daemonStatus
	// The event stream attaches just after the daemon's first converge.
	w.waitUntil(t, "status to report the daemon recording", 2*time.Second, func() bool {
		kernel, ds = w.daemonStatus(w.sgWithoutNetfilter("status", "--json"))
		return ds.Recording
	})
	if want := (daemonStatus{Running: true, PID: d.Cmd.Process.Pid, Recording: true}); kernel != "in sync" || ds != want {
		t.Errorf("status --json without netfilter: kernel %q, daemon %+v; want in sync, %+v", kernel, ds, want)
	}
	if r := w.sgWithoutNetfilter("revoke", "user", w.plain.Name); r.code != 0 {
		t.Fatalf("revoke without netfilter while the daemon runs: exit %d: %s", r.code, r.stderr)
	}
	w.expectBlocked(&w.plain, remote(25)...)
	if st := w.status(); len(st.AllowedUsers) != 0 || st.Kernel.State != "in sync" {
		t.Errorf("after allow and revoke through the daemon: %+v", st)
	}

	// kill -9: the socket file stays, nobody answers it.
	d.Kill()
	if _, err := os.Stat(filepath.Join(w.stateDir, "daemon.sock")); err != nil {
		t.Fatalf("socket file after kill -9: %v (the test wants the stale file present)", err)
	}
	if r := w.sgWithoutNetfilter("allow", "user", w.plain.Name); r.code == 0 || !strings.Contains(r.stderr, "nf_tables") {
		t.Errorf("allow without netfilter and without a daemon: exit %d, stderr %q; want the direct path's nf_tables error", r.code, r.stderr)
	}
	if r := w.sg("allow", "user", w.plain.Name); r.code != 0 || r.stderr != "" {
		t.Fatalf("allow past a dead daemon's socket: exit %d, stderr %q; want it to work directly and quietly", r.code, r.stderr)
	}
	w.expectReach(&w.plain, remote(25)...)
	kernel, ds = w.daemonStatus(w.sg("status", "--json"))
	if kernel != "in sync" || ds.Running {
		t.Errorf("status after kill -9: kernel %q, daemon %+v; want in sync, not running", kernel, ds)
	}
	if r := w.sg("events"); r.code != 0 || !strings.Contains(r.stderr, "no daemon is running, so blocked attempts are not being recorded") {
		t.Errorf("events without a daemon: exit %d, stderr %q; want the warning", r.code, r.stderr)
	}
}

// TestPrivilegedSecondDaemonIsRefused: a second serve on the same state
// directory exits 1 at once naming the running daemon's pid, instead of
// retrying forever.
func TestPrivilegedSecondDaemonIsRefused(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	d := w.startDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := w.client.Command(binary, "--state-dir", w.stateDir, "serve", "--listen", "127.0.0.1:9726", "--backend", "nft")
	second := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	second.Env = cmd.Env
	r := run(t, second)
	if ctx.Err() != nil {
		t.Fatalf("the second daemon was still running after 15s; want it refused at start. stderr:\n%s", r.stderr)
	}
	want := "pid " + strconv.Itoa(d.Cmd.Process.Pid)
	if r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("second serve: exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, want)
	}
	// The first one still serves and enforces.
	if _, err := w.metrics(); err != nil {
		t.Errorf("first daemon after the refusal: %v", err)
	}
	w.client.Exec(t, "nft", "flush", "ruleset")
	w.waitUntil(t, "the first daemon repairs a flush", 2*time.Second, func() bool {
		return w.blocked(&w.plain, testutil.HostPort("192.0.2.2", 25))
	})
}

// TestPrivilegedFlushIsRepairedWhileAChangeHoldsTheLock: a long change (here
// the test holding the state lock) must not leave a flushed ruleset
// unrepaired until it ends.
func TestPrivilegedFlushIsRepairedWhileAChangeHoldsTheLock(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	w.startDaemon(t)
	w.expectBlocked(&w.plain, remote(25)...)

	lock, err := os.OpenFile(filepath.Join(w.stateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w.client.Exec(t, "nft", "flush", "ruleset")
	took := w.waitUntil(t, "the flush repaired while the state lock is held", 2*time.Second, func() bool {
		return w.blocked(&w.plain, testutil.HostPort("192.0.2.2", 25))
	})
	t.Logf("repaired %v after the flush, with the state lock held", took)
	w.expectBlocked(&w.plain, remote(25)...)
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if st := w.status(); st.Kernel.State != "in sync" {
		t.Errorf("status after the lock is released: kernel %q, want in sync", st.Kernel.State)
	}
}

// TestPrivilegedMetricsOffLoopbackNeedAToken: /metrics names blocked users;
// on an address other than loopback it answers 401 to everyone without
// --metrics-token-file, and with it to everyone without its bearer token.
func TestPrivilegedMetricsOffLoopbackNeedAToken(t *testing.T) {
	w := newWorld(t)
	w.sgOK("enable", "--backend", "nft")
	const token = "e2e-metrics-token-0123456789"
	tokenFile := filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const addr = "192.0.2.1:9727"
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the daemon's self-signed certificate
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var c net.Conn
			err := w.client.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: time.Second}).DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}}
	defer client.CloseIdleConnections()
	get := func(auth string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, phase := range []struct {
		name  string
		extra []string
		cases map[string]int // Authorization header -> status
	}{
		{"no token file: nobody", nil, map[string]int{"": 401, "Bearer " + token: 401}},
		{"token file", []string{"--metrics-token-file", tokenFile}, map[string]int{"": 401, "Bearer wrong-token": 401, "Bearer " + token: 200}},
	} {
		t.Run(phase.name, func(t *testing.T) {
			cmd := w.client.Command(binary, append([]string{"--state-dir", w.stateDir, "serve", "--listen", addr, "--backend", "nft"}, phase.extra...)...)
			logs := &strings.Builder{}
			cmd.Stderr = logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			p := testutil.Watch(cmd)
			defer func() {
				p.Stop()
				if t.Failed() {
					t.Logf("daemon log:\n%s", logs.String())
				}
			}()
			w.waitUntil(t, "the daemon serves HTTPS", 5*time.Second, func() bool { return get("") != 0 })
			for auth, want := range phase.cases {
				if got := get(auth); got != want {
					t.Errorf("GET /metrics with Authorization %q = %d, want %d", auth, got, want)
				}
			}
		})
	}
}
