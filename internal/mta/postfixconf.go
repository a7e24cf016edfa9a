package mta

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// postfixPerHost is Postfix's limit on simultaneous connections per client.
const postfixPerHost = "smtpd_client_connection_count_limit"

// postfixLogicalEnd returns the end of the logical line starting at physical
// line i of a main.cf or master.cf: following lines that start with white
// space continue it; blank and comment lines do not.
func postfixLogicalEnd(lines []string, i int) int {
	j := i + 1
	for j < len(lines) && (strings.HasPrefix(lines[j], " ") || strings.HasPrefix(lines[j], "\t")) && !isBlankOrComment(lines[j]) {
		j++
	}
	return j
}

// setMainCF sets parameter name to value in a main.cf, the way postconf -e
// does: every definition of name (with its continuation lines) is replaced
// by "name = value", and a parameter not defined yet is appended. Every other
// byte stays as it was; applying the same change twice changes nothing.
func setMainCF(src []byte, name, value string) []byte {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\s*=`)
	lines := splitLines(src)
	var out strings.Builder
	out.Grow(len(src) + len(name) + len(value) + 8)
	found := false
	for i := 0; i < len(lines); {
		if !re.MatchString(lines[i]) {
			out.WriteString(lines[i])
			i++
			continue
		}
		end := postfixLogicalEnd(lines, i)
		fmt.Fprintf(&out, "%s = %s%s", name, value, lineEnding(lines[end-1]))
		found = true
		i = end
	}
	if !found {
		if len(lines) > 0 && lineEnding(lines[len(lines)-1]) == "" {
			out.WriteString("\n")
		}
		fmt.Fprintf(&out, "%s = %s\n", name, value)
	}
	return []byte(out.String())
}

// masterEntry is one service of master.cf.
type masterEntry struct {
	Service, Type, MaxProc, Command string

	line int // index of its first physical line
	// maxproc's byte range within that line; -1 when the field is on a
	// continuation line.
	maxprocStart, maxprocEnd int
}

// master.cf fields: service type private unpriv chroot wakeup maxproc command.
const (
	masterMaxProcField = 6
	masterCommandField = 7
)

var fieldRE = regexp.MustCompile(`\S+`)

// parseMasterCF lists the services of a master.cf, or of `postconf -M`
// output, which has the same syntax.
func parseMasterCF(src []byte) []masterEntry {
	lines := splitLines(src)
	var out []masterEntry
	for i := 0; i < len(lines); {
		if isBlankOrComment(lines[i]) || strings.HasPrefix(lines[i], " ") || strings.HasPrefix(lines[i], "\t") {
			i++
			continue
		}
		end := postfixLogicalEnd(lines, i)
		var joined strings.Builder
		for _, l := range lines[i:end] {
			joined.WriteString(strings.TrimRight(l, "\r\n"))
			joined.WriteString(" ")
		}
		f := strings.Fields(joined.String())
		if len(f) > masterCommandField {
			e := masterEntry{
				Service: f[0], Type: f[1], MaxProc: f[masterMaxProcField], Command: f[masterCommandField],
				line: i, maxprocStart: -1, maxprocEnd: -1,
			}
			if loc := fieldRE.FindAllStringIndex(lines[i], -1); len(loc) > masterMaxProcField {
				e.maxprocStart, e.maxprocEnd = loc[masterMaxProcField][0], loc[masterMaxProcField][1]
			}
			out = append(out, e)
		}
		i = end
	}
	return out
}

// isSMTPService reports whether a master.cf service name listens on the
// SMTP port: "smtp", "25", or either behind an address ("127.0.0.1:smtp").
func isSMTPService(name string) bool {
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name = name[i+1:]
	}
	return name == "smtp" || name == "25"
}

// smtpdEntries are the services whose process limit caps incoming SMTP
// connections: the smtpd behind the inet smtp service, or, when postscreen
// answers on port 25, the smtpd "pass" services it hands clients to.
func smtpdEntries(entries []masterEntry) ([]masterEntry, error) {
	var out []masterEntry
	inet, postscreen := false, false
	for _, e := range entries {
		if e.Type != "inet" || !isSMTPService(e.Service) {
			continue
		}
		inet = true
		switch e.Command {
		case "smtpd":
			out = append(out, e)
		case "postscreen":
			postscreen = true
		}
	}
	if postscreen {
		for _, e := range entries {
			if e.Type == "pass" && e.Command == "smtpd" {
				out = append(out, e)
			}
		}
	}
	switch {
	case !inet:
		return nil, fmt.Errorf("master.cf has no inet service on the smtp port")
	case len(out) == 0:
		return nil, fmt.Errorf("master.cf runs no smtpd for the smtp port")
	}
	return out, nil
}

// postfixMaxConnections is the process limit of the smtpd serving port 25;
// "-" means default_process_limit.
func postfixMaxConnections(master []byte, defaultProcessLimit string) (int, error) {
	es, err := smtpdEntries(parseMasterCF(master))
	if err != nil {
		return 0, err
	}
	v := es[0].MaxProc
	if v == "-" {
		v = defaultProcessLimit
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("maxproc of %s/%s: not a number: %q", es[0].Service, es[0].Type, v)
	}
	return n, nil
}

// setMasterMaxproc sets the maxproc field of the smtpd services serving
// port 25 (see smtpdEntries) to n, leaving every other byte as it was.
func setMasterMaxproc(src []byte, n int) ([]byte, error) {
	es, err := smtpdEntries(parseMasterCF(src))
	if err != nil {
		return nil, err
	}
	lines := splitLines(src)
	for _, e := range es {
		if e.maxprocStart < 0 {
			return nil, fmt.Errorf("master.cf line %d: maxproc of %s/%s is not on the service's first line; edit it by hand", e.line+1, e.Service, e.Type)
		}
		lines[e.line] = replaceField(lines[e.line], e.maxprocStart, e.maxprocEnd, strconv.Itoa(n))
	}
	return []byte(strings.Join(lines, "")), nil
}

// replaceField replaces line[start:end] with v and keeps the next field's
// column where the spaces after the field allow it.
func replaceField(line string, start, end int, v string) string {
	rest := line[end:]
	spaces := len(rest) - len(strings.TrimLeft(rest, " "))
	if spaces > 0 && end+spaces < len(line) && line[end+spaces] != '\n' && line[end+spaces] != '\r' {
		pad := spaces - (len(v) - (end - start))
		pad = max(pad, 1)
		rest = strings.Repeat(" ", pad) + rest[spaces:]
	}
	return line[:start] + v + rest
}
