//go:build linux

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// Cases only the bpf backend has: what its cgroup hook adds over nft
// (containers, processes named in events), and what living among other
// programs on a cgroup asks of it. The matrix both backends pass is in
// e2e_test.go and bypass_test.go.

// TestPrivilegedBPFEnableOnCgroup: enable --backend bpf --cgroup attaches to
// that cgroup only, status names backend and cgroup, the CLI refuses a
// cgroup for nft, disable leaves nothing, and the same works through a
// running daemon (the CLI's enable goes over its socket, and the daemon
// converges the stored cgroup).
func TestPrivilegedBPFEnableOnCgroup(t *testing.T) {
	w := newWorldFor(t, bpf.Name)
	smtp := remote(25)

	if r := w.sg("enable", "--backend", "nft", "--cgroup", w.cg.Path); r.code != 2 {
		t.Errorf("enable --backend nft --cgroup: exit %d (%s), want 2", r.code, r.stderr)
	}
	w.enable()
	if st := w.status(); !st.Enabled || st.Backend != bpf.Name || st.Cgroup != w.cg.Path {
		t.Errorf("status after enable = %+v, want enabled, backend bpf, cgroup %s", st, w.cg.Path)
	}
	if out := w.sgOK("status"); !strings.Contains(out, "not used: the restriction was enabled with backend bpf") {
		t.Errorf("status does not say why nft is not used:\n%s", out)
	}
	w.expectBlocked(&w.plain, smtp...)
	w.expectReach(nil, smtp...)
	w.expectReach(&w.plain, testutil.HostPort("192.0.2.2", 8080))
	// Outside the cgroup nothing is attached: the host's root cgroup is
	// untouched, and nft's table was never made.
	for _, r := range testutil.ConnectAs(t, w.client, &w.plain, smtp...) {
		if !r.OK {
			t.Errorf("%s outside cgroup %s: %s, want connected (bpf applies to the cgroup only)", w.plain.Name, w.cg.Path, r)
		}
	}
	if table := w.kernelTable(); table != "" {
		t.Errorf("bpf enable created an nftables table:\n%s", table)
	}
	w.sgOK("disable")
	w.expectNothingLeft("after disable")
	w.expectReach(&w.plain, smtp...)

	// Through the daemon: serve --cgroup keeps its probe in the test's
	// cgroup; the CLI enable goes over the socket.
	w.startDaemon(t, "--verify-interval", "1s")
	w.enable()
	if st := w.status(); !st.Enabled || st.Backend != bpf.Name || st.Cgroup != w.cg.Path {
		t.Errorf("status after enable through the daemon = %+v, want enabled, backend bpf, cgroup %s", st, w.cg.Path)
	}
	w.expectBlocked(&w.plain, smtp...)
	w.sgOK("disable")
	w.expectNothingLeft("after disable through the daemon")
	w.expectReach(&w.plain, smtp...)
}

// mailerScript connects once with bash's /dev/tcp, says on stdout whether
// it connected, and stays alive until its stdin closes, so the daemon finds
// it in /proc when it enriches the event.
const mailerScript = `#!/bin/bash
if : 3<>"/dev/tcp/$1/$2"; then echo connected; else echo refused; fi
read -r -t 60 _
`

// script is a running mailerScript.
type script struct {
	path   string // as executed, and as the kernel puts it in argv[1]
	pid    int
	stdin  io.Closer
	stderr *strings.Builder
	proc   *testutil.Proc
	result string // "connected" or "refused"
}

// runScript starts mailerScript as u in ns, in the test's cgroup, and waits
// until it has tried addr:port.
func (w *world) runScript(t *testing.T, ns *testutil.NetNS, u testutil.User, addr string, port int) *script {
	t.Helper()
	dir, err := os.MkdirTemp("", "smtpguard-script-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &script{path: filepath.Join(dir, "sgt-mailer.sh"), stderr: &strings.Builder{}}
	if err := os.WriteFile(s.path, []byte(mailerScript), 0o755); err != nil {
		t.Fatal(err)
	}
	// nsenter and setpriv exec, so the script keeps the started pid.
	cmd := w.netCommand(ns, "setpriv", "--reuid", strconv.Itoa(int(u.UID)), "--regid", strconv.Itoa(int(u.GID)),
		"--clear-groups", s.path, addr, strconv.Itoa(port))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = s.stderr
	if err := w.start(cmd); err != nil {
		t.Fatalf("start %s: %v", s.path, err)
	}
	s.pid, s.stdin, s.proc = cmd.Process.Pid, stdin, testutil.Watch(cmd)
	t.Cleanup(func() { stdin.Close(); s.proc.Stop() })
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	select {
	case s.result = <-line:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s said nothing within 10s; stderr: %s", s.path, s.stderr)
	}
	return s
}

// procEvent is an events --json item with the process fields.
type procEvent struct {
	UID         uint32 `json:"uid"`
	Destination string `json:"destination"`
	Port        int    `json:"port"`
	Action      string `json:"action"`
	PID         int    `json:"pid"`
	Comm        string `json:"comm"`
	Exe         string `json:"exe"`
	Cmdline     string `json:"cmdline"`
	Cgroup      string `json:"cgroup"`
}

// eventOf waits (bounded) for the event events --json records for pid.
func (w *world) eventOf(t *testing.T, pid int) procEvent {
	t.Helper()
	var found procEvent
	var seen []procEvent
	w.waitUntil(t, fmt.Sprintf("events --json records pid %d", pid), 10*time.Second, func() bool {
		seen = nil
		if err := json.Unmarshal([]byte(w.sgOK("events", "--json")), &seen); err != nil {
			t.Fatalf("events --json: %v", err)
		}
		for _, e := range seen {
			if e.PID == pid {
				found = e
				return true
			}
		}
		return false
	})
	// And events, for a person, names it under the attempt.
	want := regexp.MustCompile(`(?m)^    process  ` + regexp.QuoteMeta(found.Comm) + `\[` + strconv.Itoa(pid) + `\]`)
	if out := w.sgOK("events"); !want.MatchString(out) {
		t.Errorf("events does not name the refused process %s[%d]:\n%s", found.Comm, pid, out)
	}
	return found
}

// TestPrivilegedBPFEventsNameTheProcess: a blocked attempt by a script (bash
// connecting through /dev/tcp, still running while the daemon looks in /proc)
// is recorded with its pid, comm (the script's name), exe (bash), cmdline
// and cgroup; and a process of the cgroup in a network namespace of its own
// (a container) is refused and named the same way.
func TestPrivilegedBPFEventsNameTheProcess(t *testing.T) {
	w := newWorldFor(t, bpf.Name)
	w.startDaemon(t, "--verify-interval", "1s")
	w.enable()
	// The event reader attaches after the daemon's converge of the enable.
	w.waitUntil(t, "status to report the daemon recording", 10*time.Second, func() bool {
		_, d := w.daemonStatus(w.sg("status", "--json"))
		return d.Recording
	})
	bash, err := filepath.EvalSymlinks("/bin/bash")
	if err != nil {
		t.Fatal(err)
	}
	// A container before its network is set up: nothing but loopback.
	// Without bpf its connect fails with ENETUNREACH, before any packet;
	// the cgroup hook runs before routing and refuses it.
	container := testutil.NewNetNS(t)
	for _, c := range []struct {
		name string
		ns   *testutil.NetNS
		dst  string
		port int
	}{
		{"a script in the host's network namespace", w.client, "192.0.2.2", 25},
		{"a script in a container's network namespace", container, "192.0.2.3", 587},
	} {
		t.Run(c.name, func(t *testing.T) {
			w.t = t
			s := w.runScript(t, c.ns, w.plain, c.dst, c.port)
			if s.result != "refused" {
				t.Fatalf("%s as %s to %s:%d: %s, want refused; stderr: %s", s.path, w.plain.Name, c.dst, c.port, s.result, s.stderr)
			}
			e := w.eventOf(t, s.pid)
			want := procEvent{
				UID: w.plain.UID, Destination: c.dst, Port: c.port, Action: "blocked",
				PID: s.pid, Comm: filepath.Base(s.path), Exe: bash,
				Cmdline: fmt.Sprintf("/bin/bash %s %s %d", s.path, c.dst, c.port),
				Cgroup:  "/" + filepath.Base(w.cg.Path),
			}
			if diff := cmp.Diff(want, e); diff != "" {
				t.Errorf("event of %s (-want +got):\n%s", s.path, diff)
			}
			s.stdin.Close()
			select {
			case <-s.proc.Done():
			case <-time.After(5 * time.Second):
				t.Errorf("%s still runs 5s after its stdin closed", s.path)
			}
			if msg := w.refusalMessage(); !strings.Contains(s.stderr.String(), msg) {
				t.Errorf("%s stderr = %q, want bash to report %q", s.path, s.stderr, msg)
			}
		})
	}
	t.Run("root in the container is not refused by smtpguard", func(t *testing.T) {
		w.t = t
		for _, r := range w.connectIn(container, nil, "192.0.2.2:25") {
			if r.OK || r.Errno != "ENETUNREACH" {
				t.Errorf("root in a network namespace without routes to %s: %s, want ENETUNREACH (no route, not a refusal)", r.Addr, r)
			}
		}
	})
	w.t = t
	w.sgOK("disable")
}

// refusalMessage is strerror of refusalErrno, as bash prints it.
func (w *world) refusalMessage() string {
	if w.refusalErrno() == "EPERM" {
		return "Operation not permitted"
	}
	return "Connection refused"
}

// TestPrivilegedBPFCoexistsWithOtherPrograms: programs another tool attached
// to the same cgroup (BPF_F_ALLOW_MULTI) before smtpguard and after keep
// running on every connect while smtpguard refuses, and disable removes
// smtpguard's programs only.
func TestPrivilegedBPFCoexistsWithOtherPrograms(t *testing.T) {
	w := newWorldFor(t, bpf.Name)
	attach := func(p *ebpf.Program) link.Link {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: w.cg.Path, Attach: ebpf.AttachCGroupInet4Connect, Program: p})
		if err != nil {
			t.Fatalf("attach another program to %s: %v", w.cg.Path, err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	beforeProg, beforeCount := testutil.CounterProgram(t)
	attach(beforeProg)
	w.enable()
	afterProg, afterCount := testutil.CounterProgram(t)
	attach(afterProg)
	w.sgOK("allow", "group", w.group) // a policy change must not disturb them either

	counts := func() [2]uint64 {
		return [2]uint64{testutil.ConnectCount(t, beforeCount), testutil.ConnectCount(t, afterCount)}
	}
	c0 := counts()
	w.expectBlocked(&w.plain, "192.0.2.2:25")
	w.expectReach(&w.supp, "192.0.2.2:25")
	w.expectReach(&w.plain, "192.0.2.2:8080")
	if c1 := counts(); c1 != [2]uint64{c0[0] + 3, c0[1] + 3} {
		t.Errorf("the programs attached before and after smtpguard counted %v → %v for 3 connects, want each +3", c0, c1)
	}
	w.sgOK("disable")
	progs, err := bpf.CgroupPrograms(w.cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got := progs[ebpf.AttachCGroupInet4Connect.String()]; len(got) != 2 {
		t.Errorf("after disable cgroup %s runs connect4 programs %v, want only the other 2", w.cg.Path, got)
	}
	if got := progs[ebpf.AttachCGroupInet6Connect.String()]; len(got) != 0 {
		t.Errorf("after disable cgroup %s runs connect6 programs %v, want none", w.cg.Path, got)
	}
	c2 := counts()
	w.expectReach(&w.plain, "192.0.2.2:25")
	if c3 := counts(); c3 != [2]uint64{c2[0] + 1, c2[1] + 1} {
		t.Errorf("after disable the other programs counted %v → %v for 1 connect, want each +1", c2, c3)
	}
}

// TestPrivilegedBPFDaemonRepairsADetachedLink: root detaching smtpguard's
// link from outside (opening the pin, BPF_LINK_DETACH, unpinning it) lets
// the user through only until the daemon's next verification reattaches it.
func TestPrivilegedBPFDaemonRepairsADetachedLink(t *testing.T) {
	w := newWorldFor(t, bpf.Name)
	w.enable()
	w.startDaemon(t, "--verify-interval", "1s")
	w.expectBlocked(&w.plain, remote(25)...)

	for _, c := range []struct{ link, addr string }{
		{"link_sg_connect4", "192.0.2.2:25"},
		{"link_sg_connect6", "[2001:db8::2]:25"},
	} {
		t.Run(c.link, func(t *testing.T) {
			w.t = t
			w.detachPinnedLink(c.link)
			// ECONNABORTED: connected, then ended by the repair itself (a
			// change that refuses a session ends it), when the repair came
			// before the banner was read: the detach did let it through.
			if r := w.connect(&w.plain, c.addr)[0]; !r.OK && r.Errno != "ECONNABORTED" {
				t.Fatalf("%s right after detaching %s: %s, want connected (else the detach did nothing and the repair proves nothing)", w.plain.Name, c.link, r)
			}
			took := w.waitUntil(t, "the daemon reattaches "+c.link, 5*time.Second, func() bool {
				r := w.connect(&w.plain, c.addr)[0]
				return !r.OK && r.Errno == w.refusalErrno()
			})
			t.Logf("%s repaired within %v", c.link, took)
			w.expectBlocked(&w.plain, remote(25)...)
			if _, err := os.Stat(filepath.Join(w.bpffs, bpf.PinDirName, c.link)); err != nil {
				t.Errorf("after the repair: %v, want the link pinned again", err)
			}
			w.waitUntil(t, "status reports in sync", 5*time.Second, func() bool {
				return w.status().Kernel.State == "in sync"
			})
		})
	}
	w.t = t
	w.sgOK("disable")
	w.expectNothingLeft("after disable")
}
