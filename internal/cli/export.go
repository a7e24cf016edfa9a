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
--output. Apply it on any server with 'smtpguard import FILE'.

--output replaces a regular file whole (a new file is written beside it and
renamed over it); "-" and /dev/stdout mean standard output; a character device
or a FIFO is written into as it is. A symbolic link, a directory, a socket or a
block device is refused: smtpguard never follows a link to a file it writes.`,
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
			switch output {
			case "", "-", "/dev/stdout":
				// /dev/stdout is a link to whatever stdout is: write to the
				// stream itself instead of following the link.
				_, err := e.stdio.Out.Write(data)
				return err
			case "/dev/stderr":
				_, err := e.stdio.Err.Write(data)
				return err
			}
			return atomicfile.WriteOutput(output, data, 0o644)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "toml or yaml (default: from the output file's extension, else toml)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}
