//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// export -o used to write a temporary file and rename it over the target,
// turning a device node into a regular file and replacing whatever a link
// pointed from. The device case runs in a private mount namespace, on a
// tmpfs of its own, with a null device made there: the host's /dev is never
// touched.
func TestPrivilegedExportOutputs(t *testing.T) {
	testutil.Privileged(t)
	stateDir := t.TempDir()
	export := func(args ...string) cmdResult {
		return run(t, exec.Command(binary, append([]string{"--state-dir", stateDir, "export"}, args...)...))
	}
	want := export()
	if want.code != 0 {
		t.Fatalf("export: exit %d: %s", want.code, want.stderr)
	}

	t.Run("a character device stays a character device", func(t *testing.T) {
		mnt := t.TempDir()
		script := `mount -t tmpfs smtpguard-test "$1" || exit 97
mknod "$1/null" c 1 3 || exit 98
"$2" --state-dir "$3" export -o "$1/null"; rc=$?
stat -c %F "$1/null"
"$2" --state-dir "$3" export -o "$1/null"; exit $((rc + $?))`
		r := run(t, exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", mnt, binary, stateDir))
		if r.code != 0 || strings.TrimSpace(r.stdout) != "character special file" {
			t.Errorf("export -o DEVICE twice: exit %d, file type %q, stderr %q; want exit 0 and still a character special file", r.code, strings.TrimSpace(r.stdout), r.stderr)
		}
	})
	t.Run("a symlink is refused and its target untouched", func(t *testing.T) {
		dir := t.TempDir()
		victim := filepath.Join(dir, "victim")
		if err := os.WriteFile(victim, []byte("root:precious\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "policy.toml")
		if err := os.Symlink(victim, link); err != nil {
			t.Fatal(err)
		}
		r := export("-o", link)
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "symbolic link") {
			t.Errorf("export -o SYMLINK: exit %d, stderr %q; want exit 1 and one line naming the symbolic link", r.code, r.stderr)
		}
		if got, _ := os.ReadFile(victim); string(got) != "root:precious\n" {
			t.Errorf("the link's target holds %q, want it untouched", got)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v, %v", fi, err)
		}
	})
	t.Run("a FIFO gets the policy", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		got := make(chan []byte, 1)
		go func() {
			data, _ := os.ReadFile(fifo) // returns once the writer closes
			got <- data
		}()
		if r := export("-o", fifo); r.code != 0 {
			t.Fatalf("export -o FIFO: exit %d: %s", r.code, r.stderr)
		}
		select {
		case data := <-got:
			if string(data) != want.stdout {
				t.Errorf("the FIFO's reader got %q, want the export %q", data, want.stdout)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the FIFO's reader got nothing within 10s: export did not write into it")
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("the FIFO was replaced: %v, %v", fi, err)
		}
	})
	t.Run("a directory is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		os.Mkdir(dir, 0o755)
		if r := export("-o", dir); r.code != 1 || !strings.Contains(r.stderr, "a directory") {
			t.Errorf("export -o DIR: exit %d, stderr %q; want exit 1 naming a directory", r.code, r.stderr)
		}
	})
}

// A user who controls the state directory must not decide what root
// enforces: neither by owning it, nor by planting a link to a database that
// allows themselves, nor by planting a lock link that root would create or
// truncate.
func TestPrivilegedUntrustedStateDirectoryIsRefused(t *testing.T) {
	t.Run("owned by another user", func(t *testing.T) {
		w := newWorld(t)
		if err := os.Chown(w.stateDir, int(w.plain.UID), int(w.plain.GID)); err != nil {
			t.Fatal(err)
		}
		r := w.sg("enable", "--backend", "nft")
		if r.code != 1 || !strings.Contains(r.stderr, "owned by uid") {
			t.Errorf("enable in a directory %s owns: exit %d, stderr %q; want exit 1 naming the owner", w.plain.Name, r.code, r.stderr)
		}
		if w.kernelTable() != "" {
			t.Error("enable installed rules from a state directory a user owns")
		}
	})
	t.Run("planted database link", func(t *testing.T) {
		w := newWorld(t)
		// The attacker's own database allows the attacker.
		evil := t.TempDir()
		w.sgOK("--state-dir", evil, "allow", "user", w.plain.Name)
		db := filepath.Join(w.stateDir, "smtpguard.db")
		if err := os.Symlink(filepath.Join(evil, "smtpguard.db"), db); err != nil {
			t.Fatal(err)
		}
		r := w.sg("enable", "--backend", "nft")
		if r.code != 1 || !strings.Contains(r.stderr, "symbolic link") {
			t.Errorf("enable with a planted smtpguard.db link: exit %d, stderr %q; want exit 1 naming the link", r.code, r.stderr)
		}
		if w.kernelTable() != "" {
			w.expectBlocked(&w.plain, remote(25)...)
			t.Error("enable enforced the policy of a planted database")
		}
	})
	t.Run("planted lock link", func(t *testing.T) {
		w := newWorld(t)
		w.sgOK("enable", "--backend", "nft")
		target := filepath.Join(t.TempDir(), "created-by-root")
		lock := filepath.Join(w.stateDir, "lock")
		os.Remove(lock)
		if err := os.Symlink(target, lock); err != nil {
			t.Fatal(err)
		}
		r := w.sg("allow", "user", w.plain.Name)
		if r.code != 1 || !strings.Contains(r.stderr, "symbolic link") {
			t.Errorf("allow with a planted lock link: exit %d, stderr %q; want exit 1 naming the link", r.code, r.stderr)
		}
		if _, err := os.Lstat(target); err == nil {
			t.Error("root followed the lock link and created its target")
		}
		w.expectBlocked(&w.plain, remote(25)...)
	})
}
