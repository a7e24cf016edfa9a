package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

func newEventsCmd(e *env) *cobra.Command {
	var asJSON bool
	var since time.Duration
	var limit int
	var wide bool
	var unit, container string
	var ref string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show blocked connection attempts: who tried to reach which server",
		Long: `Show blocked (or, in log mode, logged) attempts to connect to remote SMTP
servers, newest first, aggregated per user, destination, port and minute, with a
per-user summary. The daemon ('smtpguard serve') records them. Each attempt
names the process that made it and its source: the script it ran, else the
PHP-FPM pool, the container or the systemd unit ("-" where the backend cannot
know, as under nft).`,
		Example: `  smtpguard events --since 24h
  smtpguard events --unit cron.service --wide
  smtpguard events --json --limit 100
  smtpguard events --ref sg-4f2a9c0d1e   (the reference an explain-mode refusal quoted)`,
		Args: exactArgs(0, "no arguments"),
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
			switch d := e.daemonState(ctx); {
			case !d.Running:
				fmt.Fprintln(e.stdio.Err, "smtpguard: warning: no daemon is running, so blocked attempts are not being recorded: systemctl start smtpguard")
			case !d.Recording:
				fmt.Fprintf(e.stdio.Err, "smtpguard: warning: the daemon (pid %d) is not recording blocked attempts: see journalctl -u smtpguard\n", d.PID)
			}
			f := store.EventFilter{Limit: limit, Unit: unit, Container: container, Ref: strings.TrimSpace(ref)}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			evs, err := eng.Events(ctx, f)
			if err != nil {
				return err
			}
			if asJSON {
				if evs == nil {
					evs = []engine.EventView{}
				}
				return writeJSON(e.stdio.Out, evs)
			}
			out := e.stdio.Out
			if f.Ref != "" {
				return writeRefEvents(out, f.Ref, evs)
			}
			if len(evs) == 0 {
				fmt.Fprintln(out, "no blocked attempts recorded")
				return nil
			}
			if err := writeEventRows(out, evs, wide); err != nil {
				return err
			}
			fmt.Fprintln(out)
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tUID\tATTEMPTS\tDESTINATIONS")
			// Totals over every matching row, not only the --limit shown.
			totals, err := eng.UserTotals(ctx, store.EventFilter{Since: f.Since, Unit: unit, Container: container})
			if err != nil {
				return err
			}
			for _, s := range totals {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", orDash(s.User), s.UID, s.Attempts, s.Destinations)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if limit > 0 && len(evs) == limit {
				fmt.Fprintf(out, "\nshowing the newest %d rows; the totals count every matching attempt\n", limit)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().DurationVar(&since, "since", 0, "only attempts seen within this long, e.g. 1h or 30m (default: all kept)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many rows (default: all)")
	cmd.Flags().BoolVar(&wide, "wide", false, "one line per attempt, process and source as columns (wider than 80 columns)")
	cmd.Flags().StringVar(&unit, "unit", "", "only attempts by processes of this systemd unit, e.g. cron.service")
	cmd.Flags().StringVar(&container, "container", "", "only attempts from this container: its id (the first digits do) or LXC name")
	cmd.Flags().StringVar(&ref, "ref", "", "only the attempts an explain-mode refusal quoted this reference for")
	return cmd
}

// writeRefEvents shows the attempts behind one explain reference in full,
// process included: what an administrator needs when a user forwards the
// error message.
func writeRefEvents(out io.Writer, ref string, evs []engine.EventView) error {
	if len(evs) == 0 {
		return fmt.Errorf("no attempt recorded with reference %q: check the spelling, or it is older than the retention period", ref)
	}
	for _, ev := range evs {
		fmt.Fprintf(out, "reference %s: %s (uid %d) to %s port %d, %d attempt(s), %s to %s, %s\n", ref, orDash(ev.User), ev.UID,
			ev.Address, ev.Port, ev.Count, ev.FirstSeen.Format("2006-01-02 15:04:05"), ev.LastSeen.Format("15:04:05"), ev.Action)
		if ev.PID != 0 || ev.Comm != "" {
			fmt.Fprintf(out, "  process %d (%s): %s\n", ev.PID, orDash(ev.Comm), orDash(ev.Cmdline))
		}
		for _, kv := range [][2]string{{"executable", ev.Exe}, {"directory", ev.Cwd}, {"unit", ev.Unit}, {"container", ev.Container}, {"pool", ev.Pool}} {
			if kv[1] != "" {
				fmt.Fprintf(out, "  %s: %s\n", kv[0], kv[1])
			}
		}
		if ev.AllowCommand != "" {
			fmt.Fprintf(out, "  to allow just this: %s\n", ev.AllowCommand)
		}
	}
	return nil
}
