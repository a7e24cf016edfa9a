package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/migrate"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// maxPolicyFile bounds what import reads; real policies are a few KiB.
const maxPolicyFile = 16 << 20

// importSource is where import takes the policy from: a policy file, or
// another tool's configuration.
type importSource struct {
	format    string
	csf       string
	cpanel    string
	imunify   string
	skip      bool
	dryRun    bool
	asJSON    bool
	fromFlag  int  // how many --from-* flags were given
	cpanelArg bool // --from-cpanel's ROOT came as an argument
}

func newImportCmd(e *env) *cobra.Command {
	var src importSource
	cmd := &cobra.Command{
		Use:   "import FILE | --from-csf FILE | --from-cpanel [ROOT] | --from-imunify FILE",
		Short: "Replace the policy with a policy file's, or with CSF's, cPanel's or Imunify360's settings",
		Long: `Replace the whole stored policy with the one in FILE ("-" for standard input),
and enforce it at once. The file is validated first: if anything in it is wrong
(unknown key, unknown user, bad port) nothing changes and every problem is
reported.

Leaving another tool takes one command:
  --from-csf FILE       CSF's csf.conf: SMTP_BLOCK, SMTP_ALLOWUSER, SMTP_ALLOWGROUP,
                        SMTP_PORTS, SMTP_ALLOWLOCAL, SMTP_REDIRECT
  --from-cpanel [ROOT]  cPanel & WHM's SMTP Restrictions (the smtpmailgidonly
                        tweak), read under ROOT (default /)
  --from-imunify FILE   the JSON of 'imunify360-agent config show --json'
                        (SMTP_BLOCKING: enable, ports, allow_users, allow_groups,
                        allow_local, redirect)
What has no equivalent is said. Users and groups that do not exist on this host
make the import fail, listing every one; --skip-unknown leaves them out instead.
--dry-run prints the resulting policy and the rules it would install, changing
nothing.`,
		Example: `  smtpguard import smtpguard.toml
  curl -s https://config.example/smtpguard.yaml | smtpguard import --format yaml -
  smtpguard import --from-csf /etc/csf/csf.conf --dry-run
  smtpguard import --from-cpanel
  imunify360-agent config show --json > im.json && smtpguard import --from-imunify im.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			for _, name := range []string{"from-csf", "from-cpanel", "from-imunify"} {
				if cmd.Flags().Changed(name) {
					src.fromFlag++
				}
			}
			// "--from-cpanel ROOT": the flag's value is optional, so pflag
			// leaves ROOT as an argument.
			if cmd.Flags().Changed("from-cpanel") && src.cpanel == "/" && len(args) == 1 {
				src.cpanel, src.cpanelArg = args[0], true
			}
			switch {
			case src.fromFlag > 1:
				return usagef("give one of --from-csf, --from-cpanel and --from-imunify")
			case src.fromFlag == 1 && len(args) > 0 && !src.cpanelArg:
				return usagef("give either a policy FILE or a --from-* flag, not both")
			case src.fromFlag == 0 && len(args) != 1:
				return usagef("%s expects one policy file or a --from-* flag (see '%s --help')", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, source, notes, err := src.read(e, args)
			var partial fileProblems
			if errors.As(err, &partial) {
				// Readable but wrong: check the rest as well, so that every
				// problem of the file is listed at once.
				return src.report(cmd, e, partial.file, source, partial.err)
			}
			if err != nil {
				return err
			}
			return src.apply(cmd, e, f, source, notes)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&src.format, "format", "", "toml or yaml (default: from the file's extension, else toml)")
	fl.StringVar(&src.csf, "from-csf", "", "import CSF's SMTP_BLOCK settings from this csf.conf")
	fl.StringVar(&src.cpanel, "from-cpanel", "", "import cPanel's SMTP Restrictions from the server's files under this root")
	fl.Lookup("from-cpanel").NoOptDefVal = "/"
	fl.StringVar(&src.imunify, "from-imunify", "", "import Imunify360's SMTP_BLOCKING from this JSON file")
	fl.BoolVar(&src.skip, "skip-unknown", false, "leave out users and groups that do not exist here (each named on stderr)")
	fl.BoolVar(&src.dryRun, "dry-run", false, "print the resulting policy and its rules; change nothing")
	fl.BoolVar(&src.asJSON, "json", false, "print the result as JSON")
	return cmd
}

// read returns the policy file to import, the source for the audit log and
// notes about what a foreign configuration could not carry over.
func (src *importSource) read(e *env, args []string) (policy.File, string, []string, error) {
	if src.fromFlag == 0 {
		f, err := readPolicyFile(e, args[0], src.format)
		return f, args[0], nil, err
	}
	var r migrate.Result
	var source string
	var err error
	switch {
	case src.csf != "":
		source = "csf:" + src.csf
		r, err = migrate.CSF(src.csf)
	case src.cpanel != "":
		source = "cpanel:" + src.cpanel
		r, err = migrate.CPanel(src.cpanel)
	default:
		source = "imunify360:" + src.imunify
		r, err = migrate.Imunify(src.imunify)
	}
	if err != nil {
		return policy.File{}, "", nil, usageError{err}
	}
	return r.File, source, r.Notes, nil
}

func readPolicyFile(e *env, path, format string) (policy.File, error) {
	f := policy.FormatForPath(path)
	guessed := format == "" && f == policy.FormatTOML && !strings.HasSuffix(strings.ToLower(path), ".toml")
	if format != "" {
		var err error
		if f, err = policy.ParseFormat(format); err != nil {
			return policy.File{}, usageError{err}
		}
	}
	var r io.Reader = e.stdio.In
	if path != "-" {
		file, err := os.Open(path)
		if err != nil {
			return policy.File{}, usagef("read policy file: %v", err)
		}
		defer file.Close()
		r = file
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPolicyFile+1))
	if err != nil {
		return policy.File{}, fmt.Errorf("read policy file %s: %w", path, err)
	}
	if len(data) > maxPolicyFile {
		return policy.File{}, usagef("policy file %s is larger than %d bytes", path, maxPolicyFile)
	}
	if guessed {
		// Standard input and files without an extension: YAML is told
		// apart by its "key:" lines, which TOML never has.
		f = sniffFormat(data)
	}
	pf, readable, err := policy.DecodeFilePartial(data, f)
	if err != nil {
		if readable {
			return policy.File{}, fileProblems{file: pf, err: fmt.Errorf("%s: %w", path, err)}
		}
		hint := ""
		if guessed {
			hint = fmt.Sprintf(" (read as %s, guessed from its contents: say --format toml or --format yaml)", f)
		}
		return policy.File{}, usagef("%s: %v%s", path, err, hint)
	}
	return pf, nil
}

// fileProblems is a policy file that was readable but wrong, with what did
// decode, so that import can check the rest too.
type fileProblems struct {
	file policy.File
	err  error
}

func (p fileProblems) Error() string { return p.err.Error() }

// sniffFormat tells YAML from TOML by the first line that holds something:
// a YAML document starts with "---", "key:" or "- item"; TOML with
// "key =" or "[table]".
func sniffFormat(data []byte) policy.Format {
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "- ") || yamlKeyLine.MatchString(line) {
			return policy.FormatYAML
		}
		return policy.FormatTOML
	}
	return policy.FormatTOML
}

var yamlKeyLine = regexp.MustCompile(`^["']?[A-Za-z_][A-Za-z0-9_-]*["']?\s*:(\s|$)`)

// report lists every problem of a policy file that decoded only in part:
// the decoding ones, names this host does not have, and the values'.
// Nothing is changed.
func (src *importSource) report(cmd *cobra.Command, e *env, f policy.File, source string, decodeErr error) error {
	eng, err := e.engine(cmd.Context())
	if err != nil {
		return usageError{decodeErr}
	}
	defer eng.Close()
	dir, err := eng.Directory()
	if err != nil {
		return usageError{decodeErr}
	}
	return usageError{errors.Join(decodeErr, src.checkAll(f, dir), errors.New("nothing changed"))}
}

// checkAll returns every problem of f: names this host does not have
// (unless --skip-unknown) and the values' own, together.
func (src *importSource) checkAll(f policy.File, dir *policy.Directory) error {
	var errs []error
	if unknown := migrate.Unknown(f, dir); len(unknown) > 0 && !src.skip {
		errs = append(errs, fmt.Errorf("names accounts this host does not have: %s (create them, or leave them out with --skip-unknown)", strings.Join(unknown, ", ")))
	}
	migrate.DropUnknown(&f, dir) // said above; do not say it twice
	if _, err := f.Policy(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// apply checks the names, then imports f through the engine, or with
// --dry-run shows what importing would do.
func (src *importSource) apply(cmd *cobra.Command, e *env, f policy.File, source string, notes []string) error {
	ctx := cmd.Context()
	eng, err := e.engine(ctx)
	if err != nil {
		return err
	}
	defer eng.Close()
	dir, err := eng.Directory()
	if err != nil {
		return err
	}
	if src.skip {
		for _, name := range migrate.DropUnknown(&f, dir) {
			fmt.Fprintf(e.stdio.Err, "smtpguard: skipped %s: no such account on this host\n", name)
		}
	} else if len(migrate.Unknown(f, dir)) > 0 {
		// With the values' own problems too, not only the first kind.
		return usagef("%s: %v; nothing changed", source, src.checkAll(f, dir))
	}
	if src.dryRun {
		return src.preview(ctx, e, eng, f, notes)
	}
	// On an engine of its own, run again through a daemon that started
	// meanwhile (mutate.go).
	res, err := e.change(ctx, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
		return eng.Import(ctx, e.actor(), f, source)
	})
	if err != nil {
		return err
	}
	if src.asJSON {
		return writeJSON(e.stdio.Out, struct {
			Changed bool     `json:"changed"`
			Message string   `json:"message"`
			Notes   []string `json:"notes,omitempty"`
		}{res.Changed, res.Message, notes})
	}
	fmt.Fprintln(e.stdio.Out, res.Message)
	printNotes(e.stdio.Out, notes)
	return nil
}

func (src *importSource) preview(ctx context.Context, e *env, eng *engine.Engine, f policy.File, notes []string) error {
	p, pl, err := eng.PreviewImport(ctx, f)
	if err != nil {
		return err
	}
	file := policy.ToFile(p)
	if src.asJSON {
		return writeJSON(e.stdio.Out, struct {
			DryRun bool        `json:"dry_run"`
			Policy policy.File `json:"policy"`
			Notes  []string    `json:"notes,omitempty"`
			Plan   engine.Plan `json:"plan"`
		}{true, file, notes, pl})
	}
	out := e.stdio.Out
	fmt.Fprintln(out, "# dry run: nothing was changed. The policy this import would store:")
	text, err := file.Encode(policy.FormatTOML)
	if err != nil {
		return err
	}
	out.Write(text)
	printNotes(out, notes)
	if !p.Enabled {
		fmt.Fprintln(out, "# the imported policy is disabled: importing it would remove smtpguard's rules")
		return nil
	}
	fmt.Fprintln(out, "# the rules it would install:")
	printPlan(out, pl)
	return nil
}

func printNotes(out io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
}
