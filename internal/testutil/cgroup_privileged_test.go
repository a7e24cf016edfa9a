//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPrivilegedCgroupAndBPFFSHelpers(t *testing.T) {
	Privileged(t)
	root, err := Cgroup2Root()
	if err != nil {
		t.Skipf("no cgroup2: %v", err)
	}
	t.Run("RefuseRootCgroup", func(t *testing.T) {
		for path, refuse := range map[string]bool{root: true, root + "/": true, root + "/..": true, "/tmp": true, filepath.Join(root, "child"): false} {
			if err := RefuseRootCgroup(path); (err != nil) != refuse {
				t.Errorf("RefuseRootCgroup(%s) = %v, want refusal %t", path, err, refuse)
			}
		}
	})

	var cg *Cgroup
	var fs string
	t.Run("create", func(t *testing.T) {
		cg, fs = NewCgroup(t), NewBPFFS(t)
		var st unix.Statfs_t
		if err := unix.Statfs(fs, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
			t.Errorf("NewBPFFS %s: type %#x, %v", fs, st.Type, err)
		}
		cmd := exec.Command("sleep", "60")
		if err := cg.Start(cmd); err != nil {
			t.Fatal(err)
		}
		p := Watch(cmd)
		t.Cleanup(p.Kill)
		if got := cg.Procs(t); len(got) != 1 || got[0] != fmt.Sprint(cmd.Process.Pid) {
			t.Errorf("cgroup processes %v, want the started one %d", got, cmd.Process.Pid)
		}
	})
	if _, err := os.Stat(cg.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup %s still there after its test: %v", cg.Path, err)
	}
	if mounted, _ := isBPFMount(fs); mounted {
		t.Errorf("bpf file system %s still mounted after its test", fs)
	}

	t.Run("leftovers of a dead run only", func(t *testing.T) {
		gone := exec.Command("true")
		if err := gone.Run(); err != nil {
			t.Fatal(err)
		}
		dead := filepath.Join(root, CgroupPrefix+randomHex(4))
		if err := os.WriteFile(recordPath(kindCgroup, filepath.Base(dead)), fmt.Appendf(nil, "%d 1\n", gone.Process.Pid), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dead, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(dead); release(kindCgroup, filepath.Base(dead)) })
		live := NewCgroup(t)
		if err := RemoveCgroupLeftovers(); err != nil {
			t.Errorf("RemoveCgroupLeftovers: %v", err)
		}
		if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover cgroup %s survived: %v", dead, err)
		}
		if _, err := os.Stat(live.Path); err != nil {
			t.Errorf("a live test's cgroup was removed: %v", err)
		}
	})
}

func isBPFMount(dir string) (bool, error) {
	var st, parent unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Statfs(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Type == unix.BPF_FS_MAGIC && parent.Type != unix.BPF_FS_MAGIC, nil
}
