package cli

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// linkVersion and linkCommit are set at link time by the Makefile's build
// (-ldflags -X, from git describe and git rev-parse); a plain `go build`
// leaves them empty and the version falls back to the build's own VCS info.
// They are never assigned at run time.
var (
	linkVersion string
	linkCommit  string
)

// versionInfo is what `smtpguard version` prints; its JSON names are a contract.
type versionInfo struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// buildVersion decides the version from the link-time values, else from the
// binary's build info: `go install ...@v1.2.3` records the module version, and
// a build inside a git checkout records the revision and whether it was dirty.
func buildVersion(version, commit string, read func() (*debug.BuildInfo, bool)) versionInfo {
	v := versionInfo{Version: version, Commit: commit, Go: runtime.Version()}
	if bi, ok := read(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		if v.Commit == "" {
			var rev string
			dirty := false
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "-dirty"
			}
			v.Commit = rev
		}
		if bi.GoVersion != "" {
			v.Go = bi.GoVersion
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	if v.Commit == "" {
		v.Commit = "unknown"
	}
	return v
}

func (v versionInfo) write(w io.Writer) {
	fmt.Fprintf(w, "smtpguard %s\ncommit:  %s\ngo:      %s\n", v.Version, v.Commit, v.Go)
}

// addVersion gives the root command `--version` and the `version` subcommand,
// both printing the same thing.
func addVersion(root *cobra.Command, e *env) {
	info := buildVersion(linkVersion, linkCommit, debug.ReadBuildInfo)
	root.Version = info.Version
	// cobra executes this as a template with the command as its data; the
	// commit and Go version go in as quoted string literals, so nothing in
	// them is read as template syntax.
	root.SetVersionTemplate(fmt.Sprintf("smtpguard {{.Version}}\ncommit:  {{%q}}\ngo:      {{%q}}\n", info.Commit, info.Go))
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print smtpguard's version, the commit it was built from and the Go version",
		Example: `  smtpguard version
  smtpguard version --json`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				return writeJSON(e.stdio.Out, info)
			}
			info.write(e.stdio.Out)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	root.AddCommand(cmd)
}
