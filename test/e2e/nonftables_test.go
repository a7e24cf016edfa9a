//go:build linux

package e2e

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// noNetfilterEnv makes the test binary a wrapper that runs its arguments as a
// command on which the kernel behaves as if it had no nf_tables: creating a
// NETLINK_NETFILTER socket fails with EPROTONOSUPPORT, exactly what a kernel
// built without nfnetlink answers. A seccomp filter does it, so the host's
// kernel modules are left alone.
const noNetfilterEnv = "SMTPGUARD_E2E_NO_NETFILTER"

// auditArch is the seccomp_data.arch of this build's architecture.
func auditArch() (uint32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return 0xc000003e, true // AUDIT_ARCH_X86_64
	case "arm64":
		return 0xc00000b7, true // AUDIT_ARCH_AARCH64
	}
	return 0, false
}

// runWithoutNetfilter is the wrapper side, entered from TestMain.
func runWithoutNetfilter() {
	arch, _ := auditArch()
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		args = 16 // offsetof(struct seccomp_data, args); low words first on little-endian
	)
	prog := []unix.SockFilter{
		{Code: ldW, K: 4}, // arch
		{Code: jeq, K: arch, Jt: 0, Jf: 6},
		{Code: ldW, K: 0}, // syscall number
		{Code: jeq, K: unix.SYS_SOCKET, Jt: 0, Jf: 4},
		{Code: ldW, K: args}, // domain
		{Code: jeq, K: unix.AF_NETLINK, Jt: 0, Jf: 2},
		{Code: ldW, K: args + 16}, // protocol
		{Code: jeq, K: unix.NETLINK_NETFILTER, Jt: 1, Jf: 0},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPROTONOSUPPORT)},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_NO_NEW_PRIVS:", err)
		os.Exit(97)
	}
	// TSYNC: every thread of this process, so the exec below inherits it
	// whichever thread runs it.
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		fmt.Fprintln(os.Stderr, "seccomp:", errno)
		os.Exit(97)
	}
	cmd := os.Args[1:]
	err := syscall.Exec(cmd[0], cmd, os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(97)
}

// sgWithoutNetfilter runs the CLI where creating a NETLINK_NETFILTER socket
// fails, as on a kernel without nf_tables (see nonftables_test.go): such a
// process can change the kernel only through the daemon.
func (w *world) sgWithoutNetfilter(args ...string) cmdResult {
	w.t.Helper()
	testutil.RefuseRootAttach(w.t, args...)
	self, err := os.Executable()
	if err != nil {
		w.t.Fatal(err)
	}
	cmd := w.client.Command(self, append([]string{binary, "--state-dir", w.stateDir}, args...)...)
	cmd.Env = append(os.Environ(), noNetfilterEnv+"=1")
	r := run(w.t, cmd)
	if r.code == 97 {
		w.t.Fatalf("the no-netfilter wrapper failed: %s", r.stderr)
	}
	return r
}

// TestPrivilegedKernelWithoutNFTables runs the CLI where the kernel has no
// nf_tables: every command says so in one line with what to do, and nothing
// is stored as if it had worked.
func TestPrivilegedKernelWithoutNFTables(t *testing.T) {
	if _, ok := auditArch(); !ok {
		t.Skipf("the seccomp filter of this test knows amd64 and arm64, not %s", runtime.GOARCH)
	}
	w := newWorld(t)
	without := w.sgWithoutNetfilter
	before := w.sgOK("export")
	// auto is asked in a test cgroup, never the cgroup2 root. Its bpf
	// candidate cannot work here either: ip netns exec mounts a /sys
	// without the cgroup2 mount, so auto's error names nf_tables too.
	cg := testutil.NewCgroup(t)
	for _, args := range [][]string{{"enable", "--backend", "nft"}, {"enable", "--cgroup", cg.Path}} {
		r := without(args...)
		if r.code == 0 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "nf_tables") {
			t.Errorf("smtpguard %s without nf_tables: exit %d, stderr %q; want a one-line error naming nf_tables", strings.Join(args, " "), r.code, r.stderr)
		}
		t.Logf("smtpguard %s: %s", strings.Join(args, " "), strings.TrimSpace(r.stderr))
	}
	if after := w.sgOK("export"); after != before {
		t.Errorf("a failed enable changed the stored policy:\n%s\nwas:\n%s", after, before)
	}
	if w.kernelTable() != "" {
		t.Error("a failed enable left a table in the kernel")
	}
	r := without("status")
	t.Logf("status without nf_tables: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if r.code != 0 || !strings.Contains(r.stdout, "disabled") {
		t.Errorf("status without nf_tables: exit %d, stdout %q, stderr %q; want the stored state", r.code, r.stdout, r.stderr)
	}
	// With nf_tables back, the same command works.
	w.sgOK("enable", "--backend", "nft")
	w.expectBlocked(&w.plain, "192.0.2.2:25")
	// Enabled, but the kernel cannot be read: status says so instead of
	// claiming the rules are in force, and allow changes nothing.
	r = without("status")
	t.Logf("status of an enabled policy without nf_tables: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	if strings.Contains(r.stdout, "in sync") || !strings.Contains(r.stdout+r.stderr, "nf_tables") {
		t.Errorf("status without nf_tables while enabled: stdout %q, stderr %q; want a kernel state naming nf_tables, not in sync", r.stdout, r.stderr)
	}
	before = w.sgOK("export")
	if r := without("allow", "user", w.plain.Name); r.code == 0 || !strings.Contains(r.stderr, "modprobe nf_tables") {
		t.Errorf("allow without nf_tables: exit %d, stderr %q; want a refusal saying how to load nf_tables", r.code, r.stderr)
	}
	if after := w.sgOK("export"); after != before {
		t.Errorf("a failed allow changed the stored policy:\n%s\nwas:\n%s", after, before)
	}
	w.expectBlocked(&w.plain, "192.0.2.2:25")
	w.sgOK("disable")
}
