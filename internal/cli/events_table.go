package cli

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// writeEventRows prints attempts for a person. By default each attempt is a
// table row that fits 80 columns followed by two indented lines, the process
// with its source (script, pool, container or unit) and the command that
// allows just that destination, which are too long for a column; wide puts
// everything on one line per attempt.
func writeEventRows(out io.Writer, evs []engine.EventView, wide bool) error {
	if wide {
		w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(w, "LAST SEEN\tUSER\tUID\tDESTINATION\tPORT\tCOUNT\tACTION\tPROCESS\tSOURCE\tTO ALLOW JUST THIS")
		for _, ev := range evs {
			fmt.Fprintf(w, "%s\t%s\t%s\n", eventCells(ev), orDash(printable(engine.ProcessLabel(ev.Process))),
				orDash(printable(engine.Source(ev.Process)))+"\t"+orDash(ev.AllowCommand))
		}
		return w.Flush()
	}
	// The rows are aligned by a tabwriter of their own: the indented lines
	// between them, having no cells, would end its columns at every row.
	var table bytes.Buffer
	w := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "LAST SEEN\tUSER\tUID\tDESTINATION\tPORT\tCOUNT\tACTION")
	for _, ev := range evs {
		fmt.Fprintln(w, eventCells(ev))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	lines := strings.SplitAfter(table.String(), "\n")
	var b strings.Builder
	b.WriteString(lines[0])
	for i, ev := range evs {
		b.WriteString(lines[i+1])
		fmt.Fprintf(&b, "    process  %s\n    allow    %s\n", processLine(ev), orDash(ev.AllowCommand))
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// eventCells are the tab-separated cells every layout starts with.
func eventCells(ev engine.EventView) string {
	return strings.Join([]string{ev.LastSeen.Format("2006-01-02 15:04:05"), orDash(ev.User),
		strconv.FormatUint(uint64(ev.UID), 10), ev.Address, strconv.Itoa(int(ev.Port)),
		strconv.FormatInt(ev.Count, 10), ev.Action}, "\t")
}

// processLine is "php-fpm8.2[1234]: pool www in /home/u/public_html", the
// process or its source alone when only one is known, "-" when neither is.
func processLine(ev engine.EventView) string {
	label, source := printable(engine.ProcessLabel(ev.Process)), printable(engine.Source(ev.Process))
	switch {
	case label != "" && source != "":
		return label + ": " + source
	case label != "":
		return label
	}
	return orDash(source)
}

// printable escapes what a terminal would obey rather than show: a process
// chooses its own name and command line, and must not be able to move the
// cursor, recolour or rewrite the administrator's screen, or add lines.
func printable(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !unsafeRune(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.String()
}

// unsafeRune reports control characters, tabs (they would shift a table's
// columns) and the bidirectional overrides that reorder what follows them.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == unicode.ReplacementChar || unicode.Is(unicode.Bidi_Control, r)
}
