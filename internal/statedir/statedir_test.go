package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// newDir returns a trusted state directory (mode 0700) inside a parent the
// test owns.
func newDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func write(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string // substring of the error; "" for none
	}{
		{"fresh directory", func(t *testing.T, dir string) {}, ""},
		{"trusted files", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "smtpguard.db"), 0o600)
			write(t, filepath.Join(dir, "web-cert.pem"), 0o644)
		}, ""},
		{"directory writable by everyone", func(t *testing.T, dir string) { os.Chmod(dir, 0o777) }, "writable by its group and everyone"},
		{"directory writable by its group", func(t *testing.T, dir string) { os.Chmod(dir, 0o770) }, "writable by its group"},
		{"sticky directory is still refused", func(t *testing.T, dir string) { os.Chmod(dir, 0o777|os.ModeSticky) }, "writable by"},
		{"parent writable by everyone", func(t *testing.T, dir string) { os.Chmod(filepath.Dir(dir), 0o777) }, "writable by"},
		{"sticky parent like /tmp", func(t *testing.T, dir string) { os.Chmod(filepath.Dir(dir), 0o777|os.ModeSticky) }, ""},
		{"database writable by everyone", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "smtpguard.db"), 0o666) }, "smtpguard.db is writable"},
		{"WAL writable by its group", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "smtpguard.db-wal"), 0o660) }, "smtpguard.db-wal is writable"},
		{"any other file writable by everyone", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "notes"), 0o646) }, "notes is writable"},
		{"database is a symlink", func(t *testing.T, dir string) {
			victim := filepath.Join(t.TempDir(), "victim")
			write(t, victim, 0o600)
			os.Symlink(victim, filepath.Join(dir, "smtpguard.db"))
		}, "smtpguard.db is a symbolic link"},
		{"lock is a symlink", func(t *testing.T, dir string) { os.Symlink("/etc/shadow", filepath.Join(dir, "lock")) }, "lock is a symbolic link"},
		{"web key is a symlink", func(t *testing.T, dir string) { os.Symlink("/etc/shadow", filepath.Join(dir, "web-key.pem")) }, "web-key.pem is a symbolic link"},
		{"database is a FIFO", func(t *testing.T, dir string) { syscall.Mkfifo(filepath.Join(dir, "smtpguard.db"), 0o600) }, "a FIFO"},
		{"database is a directory", func(t *testing.T, dir string) { os.Mkdir(filepath.Join(dir, "smtpguard.db"), 0o700) }, "a directory"},
		{"not a directory", func(t *testing.T, dir string) {
			os.Remove(dir)
			write(t, dir, 0o600)
		}, "is not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := newDir(t)
			tt.setup(t, dir)
			_, err := Check(dir)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Check() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Check() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// A state directory reached through a symbolic link is checked where it
// really is, and used there from then on.
func TestCheckFollowsTheDirectoryPath(t *testing.T) {
	dir := newDir(t)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if real, err := Check(link); err != nil || real != dir {
		t.Errorf("Check(link to trusted dir) = %q, %v; want %q, nil", real, err, dir)
	}
	os.Chmod(dir, 0o777)
	if _, err := Check(link); err == nil {
		t.Error("Check(link to a world-writable dir) = nil, want an error")
	}
}

func TestOpenFileNeverFollowsALink(t *testing.T) {
	dir := newDir(t)
	victim := filepath.Join(t.TempDir(), "victim")
	write(t, victim, 0o644)
	if err := os.Symlink(victim, filepath.Join(dir, "lock")); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(dir, "lock", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		f.Close()
		t.Fatal("OpenFile(symlink) succeeded, want a refusal")
	}
	if !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("OpenFile(symlink) = %v, want it to say symbolic link", err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "x" {
		t.Errorf("victim = %q after OpenFile, want it untouched", data)
	}
	// A link to a file that does not exist yet is not created either.
	missing := filepath.Join(t.TempDir(), "created")
	os.Symlink(missing, filepath.Join(dir, "smtpguard.db"))
	if _, _, err := PrepareDB(dir, "smtpguard.db"); err == nil {
		t.Error("PrepareDB(symlink) succeeded, want a refusal")
	}
	if _, err := os.Lstat(missing); err == nil {
		t.Error("PrepareDB followed the link and created its target")
	}
}

func TestOpenFileRefusesAFileOthersMayWrite(t *testing.T) {
	dir := newDir(t)
	write(t, filepath.Join(dir, "lock"), 0o666)
	if f, err := OpenFile(dir, "lock", os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
		t.Error("OpenFile(mode 0666) succeeded, want a refusal")
	}
}

func TestPrepareDB(t *testing.T) {
	dir := newDir(t)
	created, size, err := PrepareDB(dir, "smtpguard.db")
	if err != nil || !created || size != 0 {
		t.Fatalf("PrepareDB(absent) = %v, %d, %v; want created, 0, nil", created, size, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "smtpguard.db"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("database after PrepareDB: %v, %v; want mode 0600", fi, err)
	}
	write(t, filepath.Join(dir, "smtpguard.db"), 0o600)
	created, size, err = PrepareDB(dir, "smtpguard.db")
	if err != nil || created || size != 1 {
		t.Errorf("PrepareDB(existing) = %v, %d, %v; want false, 1, nil", created, size, err)
	}
}
