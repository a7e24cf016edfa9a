package mta

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSnapshotReplaceKeepsSymlinkModeAndRestores(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "exim.conf.real")
	link := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(target, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("exim.conf.real", link); err != nil {
		t.Fatal(err)
	}
	s, err := snapshot(link)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.replace([]byte("new\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symlink (%v)", link, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new\n" {
		t.Errorf("target = %q, want new", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	if err := s.restore(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old\n" {
		t.Errorf("restored target = %q, want old", b)
	}

	missing, err := snapshot(filepath.Join(dir, "00_smtpguard_limits"))
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.replace([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if err := missing.restore(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(missing.path); !os.IsNotExist(err) {
		t.Errorf("restoring a snapshot of a missing file left %s (%v)", missing.path, err)
	}
	if l := leftoverFiles(t, dir); len(l) > 0 {
		t.Errorf("leftovers: %v", l)
	}
}
