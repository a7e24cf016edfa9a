package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func newPlanCmd(e *env) *cobra.Command {
	var backend string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what enable would apply, changing nothing",
		Long: `Show the rules 'smtpguard enable' would install for the current policy, who
they let through and why, and how they differ from what the kernel holds now.
Nothing is changed.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			pl, err := eng.Plan(ctx, backend)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(e.stdio.Out, pl)
			}
			printPlan(e.stdio.Out, pl)
			return nil
		},
	}
	cmd.Flags().StringVar(&backend, "backend", "", "plan for this backend (default: the enabled one, else auto)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

// printPlan writes a plan as nft-style text with comment lines: the backend,
// who may connect and why, the kernel's state, then the rules.
func printPlan(out io.Writer, pl engine.Plan) {
	fmt.Fprintf(out, "# backend %s (%s)\n", pl.Backend, pl.Reason)
	fmt.Fprintf(out, "# %d uid(s) may connect to ports %s:\n", len(pl.AllowedUIDs), policy.PortsString(pl.Ruleset.Ports))
	for _, g := range pl.AllowedUIDs {
		fmt.Fprintf(out, "#   %d %s: %s\n", g.UID, orDash(g.User), strings.Join(g.Reasons, ", "))
	}
	if len(pl.Ruleset.RateLimits) > 0 {
		fmt.Fprintf(out, "# %d uid(s) rate limited:\n", len(pl.Ruleset.RateLimits))
		for _, r := range pl.Ruleset.RateLimits {
			fmt.Fprintf(out, "#   %d %s: %s\n", r.UID, orDash(r.User), r.Rate)
		}
	}
	for _, u := range pl.Unresolved {
		fmt.Fprintf(out, "# warning: %s\n", u)
	}
	kernel := pl.Kernel.State
	if pl.Kernel.Error != "" {
		kernel += ": " + pl.Kernel.Error
	}
	if len(pl.Kernel.Problems) > 0 {
		kernel += ": " + strings.Join(pl.Kernel.Problems, "; ")
	}
	fmt.Fprintf(out, "# kernel now: %s\n", kernel)
	fmt.Fprint(out, pl.Rendered)
}
