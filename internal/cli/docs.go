package cli

import (
	"bytes"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// NewDocsCommand returns the whole command tree, as `smtpguard` runs it, for
// generating the man pages and the shell completion scripts (tools/gendocs).
// It is for reading, not for executing: it has no standard input or output.
func NewDocsCommand() *cobra.Command {
	root := newRootCmd(&env{opts: DefaultOptions(), stdio: Stdio{In: bytes.NewReader(nil), Out: io.Discard, Err: io.Discard}})
	// cobra adds --version only when it executes; the documentation lists it.
	root.InitDefaultVersionFlag()
	root.DisableAutoGenTag = true
	return root
}

// ServiceUnit is the systemd unit that install-service writes, for the binary
// at exe and the default state directory and listen address: what `make
// install` and the packages install, so there is one unit text, not two.
func ServiceUnit(exe string) ([]byte, error) {
	unit, err := Unit(UnitConfig{Exec: exe})
	if err != nil {
		return nil, err
	}
	// install-service's header says how to remove what it wrote; an installed
	// unit is removed with whatever installed it.
	text := string(unit)
	for strings.HasPrefix(text, "#") {
		_, text, _ = strings.Cut(text, "\n")
	}
	return []byte("# Installed by make install or the smtpguard package; the same unit as install-service writes.\n" + text), nil
}
