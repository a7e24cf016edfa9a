// Package scripts holds the shell scripts the Makefile runs; its tests
// run them against fakes.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeGo writes a go command into dir/name/go that reports version.
func fakeGo(t *testing.T, dir, name, version string) string {
	t.Helper()
	p := filepath.Join(dir, name, "go")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho 'go version go" + version + " linux/amd64'\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFindGo: find-go picks a Go that builds go.mod's version, else a Go
// 1.21+ with GOTOOLCHAIN, else fails saying what to install; never a Go it
// was told to ignore. Real Go installations on this machine are ignored, and
// it never installs anything here (SMTPGUARD_FIND_GO_NO_INSTALL).
func TestFindGo(t *testing.T) {
	ignoreReal := "/usr/local/go:/usr/lib:/root/go:" + os.Getenv("HOME")
	tests := []struct {
		name     string
		gos      map[string]string // directory -> version
		path     []string          // directories of PATH, in order
		ignore   string
		env      []string
		want     string // stdout, with DIR for the temporary directory
		wantErr  string // in stderr, when it must fail
		wantNote string // in stderr
	}{
		{name: "new enough", gos: map[string]string{"a": "1.26.8"}, path: []string{"a"}, want: "DIR/a/go"},
		{name: "first new enough wins over an older one before it",
			gos: map[string]string{"old": "1.23.5", "new": "1.26.0"}, path: []string{"old", "new"}, want: "DIR/new/go"},
		{name: "1.23 fetches the toolchain", gos: map[string]string{"a": "1.23.5"}, path: []string{"a"},
			want: "env GOTOOLCHAIN=go1.26.8 DIR/a/go", wantNote: "GOTOOLCHAIN=go1.26.8"},
		{name: "GO_TOOLCHAIN is the one version", gos: map[string]string{"a": "1.23.5"}, path: []string{"a"},
			env: []string{"GO_TOOLCHAIN=go1.26.9"}, want: "env GOTOOLCHAIN=go1.26.9 DIR/a/go"},
		{name: "GO_TOOLCHAIN older than go.mod", gos: map[string]string{"a": "1.23.5"}, path: []string{"a"},
			env: []string{"GO_TOOLCHAIN=go1.25.0"}, wantErr: "older than go.mod"},
		{name: "ignored", gos: map[string]string{"a": "1.26.8", "b": "1.23.5"}, path: []string{"a", "b"}, ignore: "DIR/a",
			want: "env GOTOOLCHAIN=go1.26.8 DIR/b/go", wantNote: "ignoring DIR/a/go"},
		{name: "Debian 12's 1.19 cannot", gos: map[string]string{"a": "1.19.8"}, path: []string{"a"},
			wantErr: "no Go that can build go.mod's go 1.26.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for d, v := range tt.gos {
				fakeGo(t, dir, d, v)
			}
			var path []string
			for _, d := range tt.path {
				path = append(path, filepath.Join(dir, d))
			}
			path = append(path, "/usr/bin", "/bin")
			ignore := ignoreReal
			if tt.ignore != "" {
				ignore += ":" + strings.ReplaceAll(tt.ignore, "DIR", dir)
			}
			cmd := exec.Command("sh", "find-go")
			cmd.Env = append([]string{"PATH=" + strings.Join(path, ":"), "SMTPGUARD_GO_IGNORE=" + ignore,
				"SMTPGUARD_FIND_GO_NO_INSTALL=1"}, tt.env...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			got := strings.TrimSpace(string(out))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Errorf("find-go = %q, %v, stderr %q; want a failure saying %q", got, err, stderr.String(), tt.wantErr)
				}
				return
			}
			if want := strings.ReplaceAll(tt.want, "DIR", dir); err != nil || got != want {
				t.Errorf("find-go = %q, %v (stderr %q); want %q", got, err, stderr.String(), want)
			}
			if note := strings.ReplaceAll(tt.wantNote, "DIR", dir); !strings.Contains(stderr.String(), note) {
				t.Errorf("find-go stderr = %q, want it to mention %q", stderr.String(), note)
			}
		})
	}
}

// TestDebianMirror: the mirror comes from apt's own sources, in either
// format, so nothing names one in the project.
func TestDebianMirror(t *testing.T) {
	tests := []struct {
		name        string
		files       map[string]string
		main, sec   string
		mainMissing bool
	}{
		{"deb822 without a trailing blank line", map[string]string{"sources.list.d/debian.sources": "Types: deb\n# a comment\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.test/debian-security\nSuites: bookworm-security\nComponents: main\n"},
			"http://mirror.test/debian", "http://security.test/debian-security", false},
		{"one-line with options, backports first", map[string]string{"sources.list": "# deb http://old.test/debian bookworm main\ndeb http://mirror.test/debian bookworm-backports main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.test/debian bookworm main\n"},
			"http://mirror.test/debian", "", false},
		{"deb-src only", map[string]string{"sources.list": "deb-src http://src.test/debian bookworm main\n"}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(root, "etc/apt", name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			run := func(which string) (string, error) {
				cmd := exec.Command("./debian-mirror", which)
				cmd.Env = append(os.Environ(), "SMTPGUARD_APT_ROOT="+root, "SMTPGUARD_DEBIAN_MIRROR=", "SMTPGUARD_DEBIAN_SECURITY_MIRROR=")
				out, err := cmd.Output()
				return strings.TrimSpace(string(out)), err
			}
			got, err := run("main")
			if (err != nil) != tt.mainMissing || got != tt.main {
				t.Errorf("debian-mirror main = %q, %v; want %q (missing %v)", got, err, tt.main, tt.mainMissing)
			}
			if got, _ := run("security"); got != tt.sec {
				t.Errorf("debian-mirror security = %q, want %q", got, tt.sec)
			}
		})
	}
}
