package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/store"
)

func newAuditCmd(e *env) *cobra.Command {
	var asJSON bool
	var since time.Duration
	var limit int
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed the policy, when, and from where",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if since < 0 || limit < 0 {
				return usagef("--since and --limit must not be negative")
			}
			ctx := cmd.Context()
			eng, err := e.engine(ctx)
			if err != nil {
				return err
			}
			defer eng.Close()
			f := store.AuditFilter{Limit: limit}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			recs, err := eng.Audit(ctx, f)
			if err != nil {
				return err
			}
			if asJSON {
				if recs == nil {
					recs = []store.AuditRecord{}
				}
				return writeJSON(e.stdio.Out, recs)
			}
			if len(recs) == 0 {
				fmt.Fprintln(e.stdio.Out, "no changes recorded")
				return nil
			}
			w := tabwriter.NewWriter(e.stdio.Out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "TIME\tACTOR\tSOURCE\tOPERATION\tDETAIL\tOUTCOME")
			for _, r := range recs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.At.Format("2006-01-02 15:04:05"), r.Actor, r.Source, r.Operation, orDash(r.Detail), r.Outcome)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().DurationVar(&since, "since", 0, "only changes within this long, e.g. 24h")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many rows")
	return cmd
}
