//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// bpfWorld is a world whose smtpguard commands use the bpf backend on a
// child cgroup of the test's own, pinning in a bpf file system of its own.
type bpfWorld struct {
	*world
	cg    *testutil.Cgroup
	bpffs string
}

func newBPFWorld(t *testing.T) *bpfWorld {
	t.Helper()
	w := &bpfWorld{world: newWorld(t), cg: testutil.NewCgroup(t), bpffs: testutil.NewBPFFS(t)}
	if err := testutil.RefuseRootCgroup(w.cg.Path); err != nil {
		t.Fatal(err)
	}
	return w
}

// command runs the binary in the client namespace with nsenter --net: ip
// netns exec would mount a new /sys and hide the cgroup and bpf mounts.
func (w *bpfWorld) command(args ...string) *exec.Cmd {
	testutil.RefuseRootAttach(w.t, args...)
	cmd := exec.Command("nsenter", append([]string{"--net=" + w.client.Path(), "--", binary, "--state-dir", w.stateDir}, args...)...)
	cmd.Env = append(os.Environ(), "SMTPGUARD_BPFFS="+w.bpffs)
	return cmd
}

func (w *bpfWorld) sg(args ...string) cmdResult {
	w.t.Helper()
	return run(w.t, w.command(args...))
}

func (w *bpfWorld) sgOK(args ...string) string {
	w.t.Helper()
	r := w.sg(args...)
	if r.code != 0 {
		w.t.Fatalf("smtpguard %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

type bpfStatus struct {
	Enabled bool   `json:"enabled"`
	Backend string `json:"backend"`
	Cgroup  string `json:"cgroup"`
}

func (w *bpfWorld) status() bpfStatus {
	w.t.Helper()
	var st bpfStatus
	out := w.sgOK("status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		w.t.Fatalf("status --json: %v: %s", err, out)
	}
	return st
}

// expect asserts whether u, as a process of the test's cgroup, reaches
// addrs (refused means at once, with ECONNREFUSED or EPERM: the errno bpf
// can give depends on the kernel's bpf_set_retval).
func (w *bpfWorld) expect(u *testutil.User, reach bool, addrs ...string) {
	w.t.Helper()
	for _, r := range testutil.ConnectAsIn(w.t, w.cg, w.client, u, addrs...) {
		switch {
		case reach && !r.OK:
			w.t.Errorf("%s in cgroup %s cannot connect to %s, want connected: %s", w.who(u), w.cg.Path, r.Addr, r)
		case !reach && r.OK:
			w.t.Errorf("%s in cgroup %s connected to %s, want refused: this user can still send mail around the MTA", w.who(u), w.cg.Path, r.Addr)
		case !reach && r.Errno != "ECONNREFUSED" && r.Errno != "EPERM":
			w.t.Errorf("%s to %s failed with %s (%s), want ECONNREFUSED or EPERM at once", w.who(u), r.Addr, r.Errno, r.Err)
		}
	}
}

// expectRemoved asserts bpf left no pins and no programs on the cgroup.
func (w *bpfWorld) expectRemoved(when string) {
	w.t.Helper()
	if entries, err := os.ReadDir(filepath.Join(w.bpffs, bpf.PinDirName)); err == nil && len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		w.t.Errorf("%s: pins left under %s: %v", when, w.bpffs, names)
	}
	progs, err := bpf.CgroupPrograms(w.cg.Path)
	if err != nil {
		w.t.Fatal(err)
	}
	for attach, ids := range progs {
		if len(ids) > 0 {
			w.t.Errorf("%s: cgroup %s still has %s programs %v", when, w.cg.Path, attach, ids)
		}
	}
}

// TestPrivilegedBPFEnableOnCgroup: enable --backend bpf --cgroup attaches to
// that cgroup only, status names backend and cgroup, the CLI refuses a
// cgroup for nft, disable leaves nothing, and the same works through a
// running daemon (the CLI's enable goes over its socket, and the daemon
// converges the stored cgroup).
func TestPrivilegedBPFEnableOnCgroup(t *testing.T) {
	w := newBPFWorld(t)
	smtp := remote(25)

	if r := w.sg("enable", "--backend", "nft", "--cgroup", w.cg.Path); r.code != 2 {
		t.Errorf("enable --backend nft --cgroup: exit %d (%s), want 2", r.code, r.stderr)
	}
	w.sgOK("enable", "--backend", "bpf", "--cgroup", w.cg.Path)
	if got, want := w.status(), (bpfStatus{Enabled: true, Backend: "bpf", Cgroup: w.cg.Path}); got != want {
		t.Errorf("status after enable = %+v, want %+v", got, want)
	}
	if out := w.sgOK("status"); !strings.Contains(out, "not used: the restriction was enabled with backend bpf") {
		t.Errorf("status does not say why nft is not used:\n%s", out)
	}
	var full struct {
		Limitations []string `json:"limitations"`
	}
	if err := json.Unmarshal([]byte(w.sgOK("status", "--json")), &full); err != nil {
		t.Fatal(err)
	}
	for _, l := range full.Limitations {
		if strings.Contains(l, "setuid after socket()") || strings.Contains(l, "fd passing") {
			t.Errorf("status under bpf lists %q as a gap; bpf refuses setuid drops and passed fds (checked in internal/enforce/bpf)", l)
		}
	}
	if len(full.Limitations) == 0 {
		t.Error("status under bpf lists no limitations; want bpf's own (seteuid, SQPOLL rings, ...)")
	}
	w.expect(&w.plain, false, smtp...)
	w.expect(nil, true, smtp...)
	w.expect(&w.plain, true, testutil.HostPort("192.0.2.2", 8080))
	// Outside the cgroup nothing is attached: the host's root cgroup is
	// untouched, and nft's table was never made.
	w.expectReach(&w.plain, smtp...)
	if table := w.kernelTable(); table != "" {
		t.Errorf("bpf enable created an nftables table:\n%s", table)
	}
	w.sgOK("disable")
	w.expectRemoved("after disable")
	w.expect(&w.plain, true, smtp...)

	// Through the daemon: serve --cgroup keeps its probe in the test's
	// cgroup; the CLI enable goes over the socket.
	logs := &strings.Builder{}
	cmd := w.command("serve", "--listen", metricsAddr, "--verify-interval", "1s", "--cgroup", w.cg.Path)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start serve: %v", err)
	}
	d := testutil.Watch(cmd)
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	w.waitUntil(t, "the daemon serves /metrics", 10*time.Second, func() bool {
		_, err := w.metrics()
		return err == nil
	})
	w.sgOK("enable", "--backend", "bpf", "--cgroup", w.cg.Path)
	if got, want := w.status(), (bpfStatus{Enabled: true, Backend: "bpf", Cgroup: w.cg.Path}); got != want {
		t.Errorf("status after enable through the daemon = %+v, want %+v", got, want)
	}
	w.expect(&w.plain, false, smtp...)
	// The container case: a process of the cgroup in a network namespace
	// of its own (nothing but loopback, as a container before its network
	// is set up) is refused at connect(), before any routing: without bpf
	// it would fail with ENETUNREACH instead, and root there does.
	ctr := testutil.NewNetNS(t)
	for _, r := range testutil.ConnectAsIn(t, w.cg, ctr, &w.plain, "192.0.2.2:25") {
		if r.OK || (r.Errno != "ECONNREFUSED" && r.Errno != "EPERM") {
			t.Errorf("%s in cgroup %s and its own network namespace to %s: %s, want refused by bpf (ECONNREFUSED or EPERM)", w.plain.Name, w.cg.Path, r.Addr, r)
		}
	}
	for _, r := range testutil.ConnectAsIn(t, w.cg, ctr, nil, "192.0.2.2:25") {
		if r.Errno == "ECONNREFUSED" || r.Errno == "EPERM" {
			t.Errorf("root in its own network namespace to %s: %s, want not refused by smtpguard (no route)", r.Addr, r)
		}
	}
	// The daemon records the refused attempt with the process that made
	// it: bpf reports its pid and comm (the connect helper is this test
	// binary, comm "e2e.test").
	type procEvent struct {
		UID  uint32 `json:"uid"`
		PID  uint32 `json:"pid"`
		Comm string `json:"comm"`
	}
	var seen []procEvent
	w.waitUntil(t, "events --json names the refused process", 10*time.Second, func() bool {
		var evs []procEvent
		if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &evs); err != nil {
			t.Fatalf("events --json: %v", err)
		}
		seen = evs
		for _, e := range evs {
			if e.UID == w.plain.UID && e.PID != 0 && e.Comm == "e2e.test" {
				return true
			}
		}
		return false
	})
	t.Logf("events: %+v", seen)
	w.sgOK("disable")
	w.expectRemoved("after disable through the daemon")
	w.expect(&w.plain, true, smtp...)
}

// vectorIn runs a bypass vector (see runVector) as a process of the test's
// cgroup in the client namespace.
func (w *bpfWorld) vectorIn(t *testing.T, name string, u testutil.User, addr string) vectorResult {
	t.Helper()
	body, _ := json.Marshal(vectorRequest{Vector: name, UID: u.UID, GID: u.GID, Addr: addr})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+w.client.Path(), "--", exe)
	cmd.Env = append(os.Environ(), vectorEnv+"="+string(body))
	var out, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := w.cg.Start(cmd); err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("vector %s: %v %s", name, err, stderr.String())
	}
	var r vectorResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		t.Fatalf("vector %s output %q: %v", name, out.String(), err)
	}
	return r
}

// TestPrivilegedBPFClosesSetuidDrop: under bpf a socket root created and
// connected after dropping to an ordinary uid is refused (nft lets it
// through, see TestPrivilegedBypassVectors), and TCP Fast Open is refused
// too; the same vectors as root connect, so the refusals prove something.
func TestPrivilegedBPFClosesSetuidDrop(t *testing.T) {
	w := newBPFWorld(t)
	w.sgOK("enable", "--backend", "bpf", "--cgroup", w.cg.Path)
	t.Cleanup(func() { w.sg("disable") })
	target := testutil.HostPort("192.0.2.2", 25)
	for _, vec := range []string{"setuid-drop", "tfo"} {
		r := w.vectorIn(t, vec, w.plain, target)
		if r.Connected || (r.Errno != "ECONNREFUSED" && r.Errno != "EPERM") {
			t.Errorf("vector %s as %s in cgroup %s = %+v, want refused (ECONNREFUSED or EPERM)", vec, w.plain.Name, w.cg.Path, r)
		}
		if r.UIDInside != int(w.plain.UID) {
			t.Errorf("vector %s ran as uid %d, want %d", vec, r.UIDInside, w.plain.UID)
		}
		if r := w.vectorIn(t, vec, testutil.User{}, target); !r.Connected {
			t.Errorf("vector %s as root = %+v, want connected", vec, r)
		}
	}
}
