//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// backends are the enforcement backends the end-to-end matrix runs for.
// Every test that loops over them runs the same cases against each; where a
// case genuinely differs, its table says so with the reason.
var backends = []string{"nft", "bpf"}

// forEachBackend runs fn as a subtest per backend, each with a world of its
// own.
func forEachBackend(t *testing.T, fn func(t *testing.T, w *world)) {
	t.Helper()
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			fn(t, newWorldFor(t, backend))
		})
	}
}

// newWorldFor is newWorld whose smtpguard commands use backend. Under bpf the
// test owns a child cgroup (never the root) and a bpf file system for the
// pins; every process whose connects the test checks is started inside that
// cgroup.
func newWorldFor(t *testing.T, backend string) *world {
	t.Helper()
	w := newWorld(t)
	w.backend = backend
	if backend == bpf.Name {
		w.cg, w.bpffs = testutil.NewCgroup(t), testutil.NewBPFFS(t)
		if err := testutil.RefuseRootCgroup(w.cg.Path); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// isBPF reports whether the world enforces with the bpf backend.
func (w *world) isBPF() bool { return w.backend == bpf.Name }

// command runs the binary in the client namespace. Under bpf it uses
// nsenter --net: ip netns exec mounts a /sys of its own, which hides the
// cgroup and bpf file systems.
func (w *world) command(args ...string) *exec.Cmd {
	testutil.RefuseRootAttach(w.t, args...)
	args = append([]string{"--state-dir", w.stateDir}, args...)
	if !w.isBPF() {
		return w.client.Command(binary, args...)
	}
	cmd := w.cg.NetCommand(w.client, binary, args...)
	cmd.Env = append(os.Environ(), "SMTPGUARD_BPFFS="+w.bpffs)
	return cmd
}

// enableArgs is "enable" for the world's backend: always named, and under
// bpf always on the test's own cgroup.
func (w *world) enableArgs() []string {
	args := []string{"enable", "--backend", w.backend}
	if w.isBPF() {
		args = append(args, "--cgroup", w.cg.Path)
	}
	return args
}

func (w *world) enable() string {
	w.t.Helper()
	return w.sgOK(w.enableArgs()...)
}

// serveArgs are the daemon's arguments for the world's backend.
func (w *world) serveArgs(extra ...string) []string {
	args := append([]string{"serve", "--listen", metricsAddr, "--backend", w.backend}, extra...)
	if w.isBPF() {
		args = append(args, "--cgroup", w.cg.Path)
	}
	return args
}

// netCommand prepares name args... to run in ns; start it with w.start.
func (w *world) netCommand(ns *testutil.NetNS, name string, args ...string) *exec.Cmd {
	if !w.isBPF() {
		return ns.Command(name, args...)
	}
	return w.cg.NetCommand(ns, name, args...)
}

// start starts cmd, under bpf inside the test's cgroup from its first
// instruction.
func (w *world) start(cmd *exec.Cmd) error {
	if !w.isBPF() {
		return cmd.Start()
	}
	return w.cg.Start(cmd)
}

// connectIn connects as u from ns, under bpf as a process of the test's
// cgroup.
func (w *world) connectIn(ns *testutil.NetNS, u *testutil.User, addrs ...string) []testutil.ConnectResult {
	w.t.Helper()
	if !w.isBPF() {
		return testutil.ConnectAs(w.t, ns, u, addrs...)
	}
	return testutil.ConnectAsIn(w.t, w.cg, ns, u, addrs...)
}

// connect connects as u from the client namespace.
func (w *world) connect(u *testutil.User, addrs ...string) []testutil.ConnectResult {
	w.t.Helper()
	return w.connectIn(w.client, u, addrs...)
}

// refusalErrno is how a refused connect() fails: nft answers with a TCP
// reset; bpf fails connect() itself, with ECONNREFUSED where the kernel has
// bpf_set_retval for cgroup/connect programs, else EPERM (the backend's
// documented Refusal, probed here as root).
func (w *world) refusalErrno() string {
	if !w.isBPF() {
		return "ECONNREFUSED"
	}
	return bpf.New(bpf.Config{}).Facts().RefusalErrno
}

// tamper undoes enforcement from outside, as a root attacker or a careless
// administrator would: nft flushes the ruleset; under bpf the pinned links
// are opened, detached from the cgroup and unpinned.
func (w *world) tamper() {
	w.t.Helper()
	if !w.isBPF() {
		w.client.Exec(w.t, "nft", "flush", "ruleset")
		return
	}
	for _, name := range []string{"link_sg_connect4", "link_sg_connect6"} {
		w.detachPinnedLink(name)
	}
}

// detachPinnedLink opens the pinned link name, detaches it and unpins it.
func (w *world) detachPinnedLink(name string) {
	w.t.Helper()
	path := filepath.Join(w.bpffs, bpf.PinDirName, name)
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		w.t.Fatalf("open pinned link %s: %v", path, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil {
		w.t.Fatalf("detach link %s: %v", path, err)
	}
	if err := l.Unpin(); err != nil {
		w.t.Fatalf("unpin link %s: %v", path, err)
	}
}

// expectNothingLeft asserts the backend left nothing in the kernel: nft no
// smtpguard table; bpf no pins and no programs attached to the cgroup.
func (w *world) expectNothingLeft(when string) {
	w.t.Helper()
	if !w.isBPF() {
		if out := w.client.Exec(w.t, "nft", "list", "tables"); strings.Contains(out, "smtpguard") {
			w.t.Errorf("%s: nft list tables = %q, want no smtpguard table", when, out)
		}
		return
	}
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
