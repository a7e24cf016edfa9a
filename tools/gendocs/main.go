// Command gendocs writes what `make install` and `make package` install beside
// the binary, all generated from smtpguard's own code so that nothing is kept
// twice: the man pages (section 8, from the cobra commands), the bash, zsh and
// fish completion scripts, and the systemd unit (install-service's template).
//
//	go run ./tools/gendocs -out DIR -exec /usr/sbin/smtpguard -version v1.2.3
//
// DIR receives man/*.8, completion/{smtpguard.bash,_smtpguard,smtpguard.fish}
// and smtpguard.service. The man pages' date is SOURCE_DATE_EPOCH when set,
// so builds from one commit are byte-identical.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/smtpguard/smtpguard/internal/cli"
)

func main() {
	out := flag.String("out", "", "directory to write into (created)")
	exe := flag.String("exec", "/usr/sbin/smtpguard", "the installed binary's path, for the unit's ExecStart")
	version := flag.String("version", "", "version named in the man pages' footer")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gendocs -out DIR [-exec PATH] [-version V]")
		os.Exit(2)
	}
	date, err := sourceDate(os.Getenv("SOURCE_DATE_EPOCH"), time.Now)
	if err == nil {
		err = generate(*out, *exe, *version, date)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}

// sourceDate is SOURCE_DATE_EPOCH (reproducible builds) or now.
func sourceDate(epoch string, now func() time.Time) (time.Time, error) {
	if epoch == "" {
		return now().UTC(), nil
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q is not a number of seconds: %w", epoch, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func generate(out, exe, version string, date time.Time) error {
	if !filepath.IsAbs(exe) {
		return fmt.Errorf("-exec %q: the unit needs an absolute path", exe)
	}
	manDir := filepath.Join(out, "man")
	compDir := filepath.Join(out, "completion")
	for _, d := range []string{manDir, compDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}

	source := "smtpguard"
	if version != "" {
		source += " " + version
	}
	header := &doc.GenManHeader{Section: "8", Date: &date, Source: source, Manual: "System Administration"}
	if err := doc.GenManTree(cli.NewDocsCommand(), header, manDir); err != nil {
		return fmt.Errorf("man pages in %s: %w", manDir, err)
	}

	// Each generator gets a fresh tree: generating can add cobra's default
	// help command and flags to the one it is given.
	completions := []struct {
		file string
		gen  func(root *cobra.Command, f *os.File) error
	}{
		{"smtpguard.bash", func(root *cobra.Command, f *os.File) error { return root.GenBashCompletionV2(f, true) }},
		{"_smtpguard", func(root *cobra.Command, f *os.File) error { return root.GenZshCompletion(f) }},
		{"smtpguard.fish", func(root *cobra.Command, f *os.File) error { return root.GenFishCompletion(f, true) }},
	}
	for _, c := range completions {
		if err := writeWith(filepath.Join(compDir, c.file), func(f *os.File) error { return c.gen(cli.NewDocsCommand(), f) }); err != nil {
			return err
		}
	}

	unit, err := cli.ServiceUnit(exe)
	if err != nil {
		return fmt.Errorf("render the systemd unit: %w", err)
	}
	path := filepath.Join(out, "smtpguard.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeWith(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
