package cli

import (
	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/atomicfile"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newExportCmd(e *env) *cobra.Command {
	var format, output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write the policy as a file (TOML or YAML) for other servers",
		Long: `Write the stored policy as a versioned policy file, to standard output or to
--output. Apply it on any server with 'smtpguard import FILE'.`,
		Example: `  smtpguard export > smtpguard.toml
  smtpguard export --format yaml --output /srv/policy/smtpguard.yaml`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := policy.FormatTOML
			switch {
			case format != "":
				var err error
				if f, err = policy.ParseFormat(format); err != nil {
					return usageError{err}
				}
			case output != "":
				f = policy.FormatForPath(output)
			}
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			pf, err := eng.Export(ctx)
			if err != nil {
				return err
			}
			data, err := pf.Encode(f)
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err := e.stdio.Out.Write(data)
				return err
			}
			return atomicfile.Write(output, data, 0o644)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "toml or yaml (default: from the output file's extension, else toml)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}
