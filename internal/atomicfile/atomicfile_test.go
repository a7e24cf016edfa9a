package atomicfile

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestWriteReplacesWholeWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, []byte("old contents, longer than the new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new" {
		t.Errorf("file holds %q, %v; want %q", got, err, "new")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %v; want only the file, no temporary left", entries)
	}
}

func TestWriteIntoMissingDirectoryFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	if err := Write(path, []byte("x"), 0o644); err == nil {
		t.Fatal("Write into a missing directory = nil error")
	}
}

// Root writing through a planted link would overwrite whatever it points to.
func TestWriteRefusesSymlinks(t *testing.T) {
	for _, tt := range []struct {
		name  string
		write func(path string, data []byte, mode os.FileMode) error
	}{{"Write", Write}, {"WriteOutput", WriteOutput}} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "out.toml")
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			err := tt.write(link, []byte("policy"), 0o644)
			if err == nil || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("%s(symlink) = %v, want a refusal naming the symbolic link", tt.name, err)
			}
			if got, _ := os.ReadFile(victim); string(got) != "precious" {
				t.Errorf("victim holds %q, want it untouched", got)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the link was replaced: %v, %v", fi, err)
			}
		})
	}
}

func TestWriteOutputWritesIntoAFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		data, _ := os.ReadFile(fifo) // blocks until the writer opens and closes
		got <- data
	}()
	if err := WriteOutput(fifo, []byte("policy"), 0o644); err != nil {
		t.Fatalf("WriteOutput(fifo) = %v", err)
	}
	select {
	case data := <-got:
		if string(data) != "policy" {
			t.Errorf("reader got %q, want %q", data, "policy")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the FIFO's reader got nothing within 10s")
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v, %v", fi, err)
	}
}

func TestWriteRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	fifo := filepath.Join(dir, "fifo")
	syscall.Mkfifo(fifo, 0o600)
	for _, tt := range []struct {
		name, path, want string
		write            func(string, []byte, os.FileMode) error
	}{
		{"directory", sub, "a directory", WriteOutput},
		{"socket", sock, "a socket", WriteOutput},
		{"FIFO for a state file", fifo, "a FIFO", Write},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write(tt.path, []byte("x"), 0o644)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("write(%s) = %v, want a refusal naming %s", tt.path, err, tt.want)
			}
			fi, _ := os.Lstat(tt.path)
			if fi == nil || fi.Mode().IsRegular() {
				t.Errorf("%s was replaced by a regular file", tt.path)
			}
		})
	}
}
