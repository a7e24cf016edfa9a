package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/cli"
)

// manPages is one page per command a user can run, named as man(1) finds it.
func manPages(cmd *cobra.Command) []string {
	pages := []string{strings.ReplaceAll(cmd.CommandPath(), " ", "-") + ".8"}
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() && !c.IsAdditionalHelpTopicCommand() {
			pages = append(pages, manPages(c)...)
		}
	}
	return pages
}

func TestGenerateWritesEveryManPageCompletionAndTheUnit(t *testing.T) {
	out := t.TempDir()
	date := time.Date(2026, 11, 25, 10, 5, 30, 0, time.UTC)
	if err := generate(out, "/usr/sbin/smtpguard", "v1.2.3", date); err != nil {
		t.Fatal(err)
	}

	want := manPages(cli.NewDocsCommand())
	sort.Strings(want)
	entries, err := os.ReadDir(filepath.Join(out, "man"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("man pages (-want +got):\n%s", diff)
	}
	for _, page := range []string{"smtpguard.8", "smtpguard-version.8", "smtpguard-allow-user.8"} {
		if !contains(want, page) {
			t.Errorf("the command tree has no %s: want version and allow user documented", page)
		}
	}
	root := read(t, filepath.Join(out, "man", "smtpguard.8"))
	for _, s := range []string{`.TH "SMTPGUARD" "8" "Nov 2026" "smtpguard v1.2.3" "System Administration"`, `\fB--version\fP`, `\fBsmtpguard-enable(8)\fP`} {
		if !strings.Contains(root, s) {
			t.Errorf("smtpguard.8 lacks %q:\n%s", s, root)
		}
	}
	if strings.Contains(root, "Auto generated") {
		t.Error("smtpguard.8 carries cobra's auto-generated tag; the pages are ours")
	}

	// The scripts ask the binary itself (`smtpguard __complete ...`), which
	// works although the public `completion` command is disabled.
	for file, marker := range map[string]string{
		"smtpguard.bash": "__start_smtpguard",
		"_smtpguard":     "#compdef smtpguard",
		"smtpguard.fish": "complete -c smtpguard",
	} {
		text := read(t, filepath.Join(out, "completion", file))
		if !strings.Contains(text, marker) || !strings.Contains(text, "__complete") {
			t.Errorf("completion/%s lacks %q or the __complete call", file, marker)
		}
	}

	unit := read(t, filepath.Join(out, "smtpguard.service"))
	if !strings.Contains(unit, "\nExecStart=/usr/sbin/smtpguard ") {
		t.Errorf("smtpguard.service does not run /usr/sbin/smtpguard:\n%s", unit)
	}
}

// TestGeneratedManPagesAreReproducible: same commit, same bytes.
func TestGeneratedManPagesAreReproducible(t *testing.T) {
	date := time.Unix(1795600000, 0).UTC()
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := generate(d, "/usr/sbin/smtpguard", "v1", date); err != nil {
			t.Fatal(err)
		}
	}
	for _, rel := range []string{"man/smtpguard.8", "man/smtpguard-serve.8", "completion/_smtpguard", "smtpguard.service"} {
		if x, y := read(t, filepath.Join(a, rel)), read(t, filepath.Join(b, rel)); x != y {
			t.Errorf("%s differs between two runs", rel)
		}
	}
}

// TestUnitIsInstallServicesUnit: the installed unit and the one
// install-service writes are one text (apart from the comment saying who
// wrote it), so a change to the unit reaches the packages.
func TestUnitIsInstallServicesUnit(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := cli.RunWith(context.Background(), []string{"--state-dir", "/var/lib/smtpguard", "install-service"},
		cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb},
		cli.Options{UnitDir: dir, Systemctl: "true", Executable: func() (string, error) { return "/usr/sbin/smtpguard", nil }})
	if code != 0 {
		t.Fatalf("install-service: exit %d, stderr %q", code, errb.String())
	}
	written := read(t, filepath.Join(dir, "smtpguard.service"))
	packaged, err := cli.ServiceUnit("/usr/sbin/smtpguard")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(withoutComments(written), withoutComments(string(packaged))); diff != "" {
		t.Errorf("packaged unit differs from install-service's (-install-service +packaged):\n%s", diff)
	}
}

func TestCompletionAnswersFromTheBinary(t *testing.T) {
	var out, errb bytes.Buffer
	code := cli.RunWith(context.Background(), []string{"__complete", "en"},
		cli.Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, cli.Options{})
	if code != 0 {
		t.Fatalf("__complete: exit %d, stderr %q", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "enable\t") {
		t.Errorf("smtpguard __complete en = %q, want enable first", out.String())
	}
}

func TestGenerateRefusesARelativeExec(t *testing.T) {
	if err := generate(t.TempDir(), "bin/smtpguard", "", time.Now()); err == nil {
		t.Error("generate with -exec bin/smtpguard succeeded; systemd needs an absolute ExecStart")
	}
}

func TestSourceDate(t *testing.T) {
	now := func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }
	if got, err := sourceDate("1795600000", now); err != nil || !got.Equal(time.Unix(1795600000, 0)) {
		t.Errorf("sourceDate(1795600000) = %v, %v; want %v", got, err, time.Unix(1795600000, 0).UTC())
	}
	if got, err := sourceDate("", now); err != nil || !got.Equal(now()) {
		t.Errorf("sourceDate(\"\") = %v, %v; want now", got, err)
	}
	if _, err := sourceDate("yesterday", now); err == nil {
		t.Error(`sourceDate("yesterday") succeeded, want an error`)
	}
}

func withoutComments(unit string) string {
	var keep []string
	for _, line := range strings.Split(unit, "\n") {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
