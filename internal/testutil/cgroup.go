//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CgroupPrefix starts the name of every cgroup this package creates.
const CgroupPrefix = "sgt-cg-"

// Cgroup is a child cgroup of the cgroup2 mount that one test owns: bpf
// programs are attached there, never to the root, and the test's processes
// are started inside it.
type Cgroup struct {
	Path string
	dir  *os.File // open for SysProcAttr.CgroupFD
}

// Cgroup2Root is the cgroup2 mount point from /proc/self/mountinfo
// (/sys/fs/cgroup when unified, /sys/fs/cgroup/unified when hybrid).
func Cgroup2Root() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		pre, post, ok := strings.Cut(line, " - ")
		f, rest := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 5 && len(rest) > 0 && rest[0] == "cgroup2" {
			return strings.ReplaceAll(f[4], `\040`, " "), nil
		}
	}
	return "", errors.New("no cgroup2 file system is mounted")
}

// RefuseRootCgroup fails unless path is strictly below the cgroup2 root:
// tests must never attach programs to the root cgroup, which every process
// on the host is under.
func RefuseRootCgroup(path string) error {
	root, err := Cgroup2Root()
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Clean(root), filepath.Clean(path))
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("cgroup %s is the cgroup2 root %s or outside it: tests use a child cgroup only", path, root)
	}
	return nil
}

// NewCgroup creates <cgroup2 root>/sgt-cg-<8 hex digits>. When the test
// ends, any process left in it is moved to its parent and it is removed.
func NewCgroup(t testing.TB) *Cgroup {
	t.Helper()
	root, err := Cgroup2Root()
	if err != nil {
		t.Skipf("no cgroup2: %v", err)
	}
	cg := &Cgroup{Path: filepath.Join(root, CgroupPrefix+randomHex(4))}
	if err := RefuseRootCgroup(cg.Path); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(cg.Path)
	if err := claim(kindCgroup, name); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(cg.Path, 0o755); err != nil {
		release(kindCgroup, name)
		t.Fatalf("create cgroup: %v", err)
	}
	cg.dir, err = os.Open(cg.Path)
	if err != nil {
		os.Remove(cg.Path)
		release(kindCgroup, name)
		t.Fatalf("open cgroup: %v", err)
	}
	t.Cleanup(func() {
		cg.dir.Close()
		if err := removeCgroup(cg.Path); err != nil {
			t.Errorf("remove test cgroup: %v", err)
			return
		}
		release(kindCgroup, name)
	})
	return cg
}

// kindCgroup marks owner records of test cgroups.
const kindCgroup = "cgroup"

// leftoverCgroupAge is how old a cgroup of ours without an owner record must
// be before RemoveCgroupLeftovers takes it for a crashed run's: longer than
// make test's go test timeout.
const leftoverCgroupAge = 40 * time.Minute

// RemoveCgroupLeftovers removes the sgt-cg-* cgroups a crashed or killed run
// left under the cgroup2 root (programs attached to them go with them), and
// keeps those of test binaries still running. Call it from TestMain of
// packages that use NewCgroup, as root.
func RemoveCgroupLeftovers() error {
	root, err := Cgroup2Root()
	if err != nil {
		return nil // nothing can have been created
	}
	dirs, err := filepath.Glob(filepath.Join(root, CgroupPrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		name := filepath.Base(dir)
		if ownedByLiveProcess(kindCgroup, name) {
			continue
		}
		// The cgroup2 mount is shared by every test run on the machine,
		// also by runs whose owner records this one cannot see (make
		// test-fresh's roots): without a record, a cgroup younger than the
		// longest test run may be someone's that is still in use, and
		// removing it would move their processes out from under their rules.
		if _, err := os.Stat(recordPath(kindCgroup, name)); errors.Is(err, os.ErrNotExist) {
			if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) < leftoverCgroupAge {
				continue
			}
		}
		if err := removeCgroup(dir); err != nil {
			errs = append(errs, fmt.Errorf("leftover cgroup: %w", err))
			continue
		}
		release(kindCgroup, name)
	}
	return errors.Join(errs...)
}

// removeCgroup moves the cgroup's processes to its parent and removes it.
// A process that just exited may keep it busy for a moment: bounded retries.
func removeCgroup(path string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if procs, err := os.ReadFile(filepath.Join(path, "cgroup.procs")); err == nil {
			for pid := range strings.FieldsSeq(string(procs)) {
				os.WriteFile(filepath.Join(filepath.Dir(path), "cgroup.procs"), []byte(pid), 0o644)
			}
		}
		err := os.Remove(path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Procs lists the pids in the cgroup.
func (c *Cgroup) Procs(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.Path, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// Start puts cmd, which is not started yet, into the cgroup from its first
// instruction (clone3 with CLONE_INTO_CGROUP), so every socket it creates
// belongs to the cgroup.
func (c *Cgroup) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(c.dir.Fd())
	return cmd.Start()
}

// NetCommand prepares name args... to run in network namespace ns (nsenter
// --net, which unlike "ip netns exec" keeps the host's /sys and with it the
// cgroup file system); start it with Start to run it in the cgroup too. A
// nil ns runs it in the caller's namespace.
func (c *Cgroup) NetCommand(ns *NetNS, name string, args ...string) *exec.Cmd {
	if ns == nil {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "--", name}, args...)...)
}
