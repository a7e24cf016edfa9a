package mta

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Exim's options for simultaneous incoming SMTP connections.
const (
	eximMax     = "smtp_accept_max"
	eximPerHost = "smtp_accept_max_per_host"
	eximReserve = "smtp_accept_reserve"
)

// eximLimitOptions are passed to exim -bP, in this order.
var eximLimitOptions = []string{eximMax, eximPerHost, eximReserve}

// eximSetting is a main-section option and the value smtpguard gives it.
type eximSetting struct {
	Name, Value string
}

// eximSettings are the option lines for l. keepPerHost leaves
// smtp_accept_max_per_host out: it is an expansion (Info reports 0 for it)
// and a MaxPerHost of 0 asks to leave it as the administrator wrote it.
func eximSettings(l Limits, keepPerHost bool) []eximSetting {
	s := []eximSetting{{eximMax, strconv.Itoa(l.MaxConnections)}}
	if !keepPerHost {
		s = append(s, eximSetting{eximPerHost, strconv.Itoa(l.MaxPerHost)})
	}
	return append(s, eximSetting{eximReserve, strconv.Itoa(l.Reserve)})
}

// eximValues are the limits as exim -bP reports them.
type eximValues struct {
	Limits
	PerHostRaw string // smtp_accept_max_per_host as configured, "" when unset
}

// perHostExpanded reports whether smtp_accept_max_per_host is something
// other than a plain number, normally a ${...} expansion evaluated per
// connection.
func (v eximValues) perHostExpanded() bool {
	_, err := parseEximInt(v.PerHostRaw)
	return err != nil
}

// parseNameValues parses "name = value" lines as printed by exim -bP and
// postconf. Lines without " = " or "=" are ignored.
func parseNameValues(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		m[name] = strings.TrimSpace(value)
	}
	return m
}

// parseEximBP parses the output of
// `exim -bP smtp_accept_max smtp_accept_max_per_host smtp_accept_reserve`.
func parseEximBP(out []byte) (eximValues, error) {
	m := parseNameValues(out)
	var v eximValues
	for _, name := range eximLimitOptions {
		if _, ok := m[name]; !ok {
			return v, fmt.Errorf("exim -bP printed no %s in %q", name, strings.TrimSpace(string(out)))
		}
	}
	var err error
	if v.MaxConnections, err = parseEximInt(m[eximMax]); err != nil {
		return v, fmt.Errorf("%s: %w", eximMax, err)
	}
	if v.Reserve, err = parseEximInt(m[eximReserve]); err != nil {
		return v, fmt.Errorf("%s: %w", eximReserve, err)
	}
	v.PerHostRaw = m[eximPerHost]
	if n, err := parseEximInt(v.PerHostRaw); err == nil {
		v.MaxPerHost = n
	}
	return v, nil
}

// parseEximInt parses an integer as exim -bP prints it: decimal, with a K
// or M suffix when it is a multiple of 1024. "" (unset) is 0.
func parseEximInt(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	mult := 1
	switch s[len(s)-1] {
	case 'K', 'k':
		mult, s = 1024, s[:len(s)-1]
	case 'M', 'm':
		mult, s = 1024*1024, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return n * mult, nil
}

// eximVersion takes the version from exim -bV's first line,
// "Exim version 4.96 #2 built 11-May-2026 17:12:18".
func eximVersion(out []byte) string {
	first, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(first)
	if len(f) >= 3 && f[0] == "Exim" && f[1] == "version" {
		return f[2]
	}
	return ""
}

var (
	eximBeginRE  = regexp.MustCompile(`^begin\s+\S+$`)
	eximOptionRE = regexp.MustCompile(`^(hide\s+)?([a-z0-9_]+)\s*=`)
)

// eximLine is one logical line of an Exim configuration: physical lines
// [start, end) joined by trailing backslashes.
type eximLine struct {
	start, end int
	text       string // first physical line without leading/trailing space
}

// splitLines splits src after each "\n"; the last line may lack one.
func splitLines(src []byte) []string {
	var lines []string
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			lines = append(lines, string(src))
			break
		}
		lines = append(lines, string(src[:i+1]))
		src = src[i+1:]
	}
	return lines
}

func isBlankOrComment(line string) bool {
	t := strings.TrimSpace(line)
	return t == "" || t[0] == '#'
}

func continues(line string) bool {
	return strings.HasSuffix(strings.TrimRight(line, " \t\r\n"), `\`)
}

// eximLogicalLine returns the logical line starting at physical line i,
// which must not be blank or a comment. Following the Exim spec, a
// non-comment line ending in a backslash continues on the next line, comment
// lines may sit between continuation lines, and a blank line ends it.
func eximLogicalLine(lines []string, i int) eximLine {
	l := eximLine{start: i, text: strings.TrimSpace(lines[i])}
	j := i
	for cont := continues(lines[i]); cont && j+1 < len(lines); {
		t := strings.TrimSpace(lines[j+1])
		if t == "" {
			break
		}
		j++
		if t[0] != '#' {
			cont = continues(lines[j])
		}
	}
	l.end = j + 1
	return l
}

// lineEnding is the end of line of s: "\r\n", "\n" or "" (last line).
func lineEnding(s string) string {
	switch {
	case strings.HasSuffix(s, "\r\n"):
		return "\r\n"
	case strings.HasSuffix(s, "\n"):
		return "\n"
	}
	return ""
}

// setEximMain sets options in the main section of an Exim configuration,
// the part before the first "begin" line, and leaves every other byte as it
// was. Each existing setting of an option (including one behind "hide" or
// inside an .ifdef block) is replaced in place; options not set yet are
// inserted together before the first "begin" line, above the comments that
// introduce it. Applying the same settings twice changes nothing.
func setEximMain(src []byte, settings []eximSetting) ([]byte, error) {
	lines := splitLines(src)
	want := map[string]string{}
	for _, s := range settings {
		want[s.Name] = s.Value
	}
	replace := map[int]eximLine{} // by start line
	found := map[string]bool{}
	begin, depth := len(lines), 0
scan:
	for i := 0; i < len(lines); {
		if isBlankOrComment(lines[i]) {
			i++
			continue
		}
		l := eximLogicalLine(lines, i)
		switch {
		case eximBeginRE.MatchString(l.text):
			begin = i
			break scan
		case strings.HasPrefix(l.text, ".if"):
			depth++
		case strings.HasPrefix(l.text, ".endif"):
			depth--
		default:
			if m := eximOptionRE.FindStringSubmatch(l.text); m != nil {
				if _, ok := want[m[2]]; ok {
					replace[i] = l
					found[m[2]] = true
				}
			}
		}
		i = l.end
	}

	// Insert above the comment block that introduces the first section,
	// unless that would split a continued line.
	at := begin
	for at > 0 && isBlankOrComment(lines[at-1]) {
		at--
	}
	if at > 0 && continues(lines[at-1]) {
		at = begin
	}
	var missing []eximSetting
	for _, s := range settings {
		if !found[s.Name] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 && depth != 0 {
		return nil, fmt.Errorf("the main section ends inside a conditional (.if* without .endif), cannot add %s", missing[0].Name)
	}

	var out strings.Builder
	out.Grow(len(src) + 256)
	for i := 0; i <= len(lines); i++ {
		if i == at && len(missing) > 0 {
			insertEximBlock(&out, lines, i, missing)
		}
		if i == len(lines) {
			break
		}
		if l, ok := replace[i]; ok {
			first := lines[i]
			indent := first[:len(first)-len(strings.TrimLeft(first, " \t"))]
			m := eximOptionRE.FindStringSubmatch(l.text)
			fmt.Fprintf(&out, "%s%s%s = %s%s", indent, m[1], m[2], want[m[2]], lineEnding(lines[l.end-1]))
			i = l.end - 1
			continue
		}
		out.WriteString(lines[i])
	}
	return []byte(out.String()), nil
}

// insertEximBlock writes the options smtpguard adds, set off by blank lines
// from their neighbours, before physical line i.
func insertEximBlock(out *strings.Builder, lines []string, i int, settings []eximSetting) {
	if i > 0 {
		prev := lines[i-1]
		if lineEnding(prev) == "" {
			out.WriteString("\n") // the file did not end with a newline
		}
		if strings.TrimSpace(prev) != "" {
			out.WriteString("\n")
		}
	}
	out.WriteString(eximBlockComment)
	for _, s := range settings {
		fmt.Fprintf(out, "%s = %s\n", s.Name, s.Value)
	}
	if i < len(lines) && strings.TrimSpace(lines[i]) != "" {
		out.WriteString("\n")
	}
}

const eximBlockComment = "# Limits on simultaneous incoming SMTP connections, set by\n" +
	"# `smtpguard mta set max-connections`.\n"

// eximLimitsFile is the content of the file smtpguard owns in Debian's
// split configuration (conf.d/main/00_smtpguard_limits).
func eximLimitsFile(settings []eximSetting) []byte {
	var b strings.Builder
	b.WriteString("# Managed by smtpguard: limits on simultaneous incoming SMTP connections.\n")
	b.WriteString("# Change them with `smtpguard mta set max-connections`; edits here are overwritten.\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "%s = %s\n", s.Name, s.Value)
	}
	return []byte(b.String())
}

// debianSplitConfig reports whether update-exim4.conf.conf selects the
// split configuration (dc_use_split_config='true'). The file is shell; the
// last assignment wins.
func debianSplitConfig(conf []byte) bool {
	split := false
	for _, line := range strings.Split(string(conf), "\n") {
		name, value, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || name != "dc_use_split_config" {
			continue
		}
		value = strings.TrimSpace(value)
		value = strings.Trim(value, `'"`)
		split = value == "true"
	}
	return split
}
