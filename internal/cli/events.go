package cli

import (
	"fmt"
	"slices"
	"strconv"
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
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show blocked connection attempts: who tried to reach which server",
		Long: `Show blocked (or, in log mode, logged) attempts to connect to remote SMTP
servers, newest first, aggregated per user, destination, port and minute, with a
per-user summary. The daemon ('smtpguard serve') records them.`,
		Example: `  smtpguard events --since 24h
  smtpguard events --json --limit 100`,
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
			f := store.EventFilter{Limit: limit}
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
			if len(evs) == 0 {
				fmt.Fprintln(out, "no blocked attempts recorded")
				return nil
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "LAST SEEN\tUSER\tUID\tDESTINATION\tPORT\tCOUNT\tACTION\tTO ALLOW JUST THIS")
			for _, ev := range evs {
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", ev.LastSeen.Format("2006-01-02 15:04:05"),
					orDash(ev.User), ev.UID, ev.Address, ev.Port, ev.Count, ev.Action, ev.AllowCommand)
			}
			w.Flush()
			fmt.Fprintln(out)
			w = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tUID\tATTEMPTS\tDESTINATIONS")
			for _, s := range summarize(evs) {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\n", orDash(s.user), s.uid, s.count, s.destinations)
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	cmd.Flags().DurationVar(&since, "since", 0, "only attempts seen within this long, e.g. 1h or 30m (default: all kept)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many rows (default: all)")
	return cmd
}

type userSummary struct {
	uid          uint32
	user         string
	count        int64
	destinations int
}

// summarize totals attempts per uid, most attempts first.
func summarize(evs []engine.EventView) []userSummary {
	byUID := map[uint32]*userSummary{}
	dests := map[uint32]map[string]bool{}
	for _, ev := range evs {
		s := byUID[ev.UID]
		if s == nil {
			s = &userSummary{uid: ev.UID, user: ev.User}
			byUID[ev.UID] = s
			dests[ev.UID] = map[string]bool{}
		}
		s.count += ev.Count
		dests[ev.UID][ev.Address+":"+strconv.Itoa(int(ev.Port))] = true
	}
	var out []userSummary
	for uid, s := range byUID {
		s.destinations = len(dests[uid])
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b userSummary) int {
		if a.count != b.count {
			if a.count > b.count {
				return -1
			}
			return 1
		}
		return int(a.uid) - int(b.uid)
	})
	return out
}
