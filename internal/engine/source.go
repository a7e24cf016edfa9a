package engine

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/smtpguard/smtpguard/internal/store"
)

// ProcessLabel names the process that made an attempt the way ps and top
// do, "php-fpm8.2[1234]"; "" when nothing is known of it (the nft backend
// never knows). The command name is the process's own choice (it can set
// it), the pid is the kernel's.
func ProcessLabel(p store.Process) string {
	name := p.Comm
	if name == "" && p.Exe != "" {
		name = filepath.Base(p.Exe)
	}
	switch {
	case name != "" && p.PID != 0:
		return name + "[" + strconv.FormatUint(uint64(p.PID), 10) + "]"
	case p.PID != 0:
		return "pid " + strconv.FormatUint(uint64(p.PID), 10)
	}
	return name
}

// Source says what the process of an attempt was doing it for, the most
// specific thing known first: the script an interpreter ran (from the
// command line, relative paths resolved against the working directory),
// (and, in a container, which one), else the PHP-FPM pool (and the directory of the script it was running,
// which PHP makes the working directory during a request), else the
// container, else the systemd unit (cron.service, user-1001.slice); "" when
// nothing is known. The CLI and the web UI both show it.
func Source(p store.Process) string {
	if p.Pool == "" {
		if s := script(p.Cmdline, p.Exe); s != "" {
			if !filepath.IsAbs(s) && p.Cwd != "" {
				s = filepath.Join(p.Cwd, s)
			}
			if p.Container != "" {
				// The path is the container's own: say whose.
				s += " in " + container(p.Container)
			}
			return s
		}
	}
	switch {
	case p.Pool != "":
		if p.Cwd != "" && p.Cwd != "/" {
			return "pool " + p.Pool + " in " + p.Cwd
		}
		return "pool " + p.Pool
	case p.Container != "":
		return container(p.Container)
	}
	return p.Unit
}

// container names a container as docker ps does: an id by its first 12
// digits, an LXC container by its name.
func container(id string) string {
	if len(id) == 64 {
		id = id[:12]
	}
	return "container " + id
}

// scriptExt matches the names of scripts: what a web host's users run.
var scriptExt = regexp.MustCompile(`\.(php[0-9]?|phtml|inc|py|pl|pm|cgi|rb|sh|bash|zsh|ksh|js|mjs|cjs|ts|lua|tcl)$`)

// interpreter matches the program names (the base name, versions included)
// of interpreters whose first operand is the script they run.
var interpreter = regexp.MustCompile(`^(php(-cgi|-cli)?|python|pypy|perl|ruby|node|nodejs|lua(jit)?|tclsh|bash|sh|dash|zsh|ksh|mksh)[0-9.]*$`)

// script is the script a command line runs, as written there: the first
// argument named like a script (which also finds "php x.php" behind
// "sh -c"), else an interpreter's first operand; "" for inline code
// ("-c", "-e", "-r"), a module ("python -m"), or no interpreter. Arguments
// with spaces cannot be told apart: /proc shows the NULs between them as
// spaces.
func script(cmdline, exe string) string {
	args := strings.Fields(cmdline)
	if len(args) == 0 {
		return ""
	}
	for _, a := range args[1:] {
		if !strings.HasPrefix(a, "-") && scriptExt.MatchString(a) {
			return a
		}
	}
	if !interpreter.MatchString(filepath.Base(args[0])) && (exe == "" || !interpreter.MatchString(filepath.Base(exe))) {
		return ""
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return args[i+1]
			}
			return ""
		case a == "-c" || a == "-e" || a == "-E" || a == "-r" || a == "-m" || a == "-p":
			// php -c takes an ini file, not code, but what follows is no
			// more the script than for the others: give up alike.
			if a == "-c" && strings.HasPrefix(filepath.Base(args[0]), "php") && i+1 < len(args) {
				i++
				continue
			}
			return ""
		case a == "-f" && i+1 < len(args): // php -f FILE
			return args[i+1]
		case a == "-d" || a == "-z" || a == "-W" || a == "-X" || a == "-I" || a == "--require":
			i++ // an option's value
		case strings.HasPrefix(a, "-"):
		default:
			return a
		}
	}
	return ""
}
