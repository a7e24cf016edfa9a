package cli

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// maxPolicyFile bounds what import reads; real policies are a few KiB.
const maxPolicyFile = 16 << 20

func newImportCmd(e *env) *cobra.Command {
	var format string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Replace the policy with a policy file's (as written by export)",
		Long: `Replace the whole stored policy with the one in FILE ("-" for standard input),
and enforce it at once. The file is validated first: if anything in it is wrong
(unknown key, unknown user, bad port) nothing changes and every problem is
reported.`,
		Example: `  smtpguard import smtpguard.toml
  curl -s https://config.example/smtpguard.yaml | smtpguard import --format yaml -`,
		Args: exactArgs(1, "one policy file"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			f := policy.FormatForPath(path)
			if format != "" {
				var err error
				if f, err = policy.ParseFormat(format); err != nil {
					return usageError{err}
				}
			}
			var r io.Reader = e.stdio.In
			if path != "-" {
				file, err := os.Open(path)
				if err != nil {
					return usagef("read policy file: %v", err)
				}
				defer file.Close()
				r = file
			}
			data, err := io.ReadAll(io.LimitReader(r, maxPolicyFile+1))
			if err != nil {
				return fmt.Errorf("read policy file %s: %w", path, err)
			}
			if len(data) > maxPolicyFile {
				return usagef("policy file %s is larger than %d bytes", path, maxPolicyFile)
			}
			pf, err := policy.DecodeFile(data, f)
			if err != nil {
				return usagef("%s: %v", path, err)
			}
			return e.mutation(cmd, asJSON, func(ctx context.Context, eng *engine.Engine) (engine.Result, error) {
				return eng.Import(ctx, e.actor(), pf, path)
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "toml or yaml (default: from the file's extension, else toml)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}
