package mta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// execer runs a program and returns its standard output. A failed run's
// error includes what the program printed on standard error.
type execer func(ctx context.Context, name string, args ...string) ([]byte, error)

// runCommand is the execer that really runs programs, in the C locale so
// their output parses the same everywhere.
func runCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	return runCommandEnv(ctx, nil, name, args...)
}

// commandRunner is runCommand with env (Options.Env) added to the
// environment of every program it runs.
func commandRunner(env []string) execer {
	if len(env) == 0 {
		return runCommand
	}
	env = append([]string(nil), env...)
	return func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return runCommandEnv(ctx, env, name, args...)
	}
}

// runCommandEnv runs a program with env added to this process's
// environment; LC_ALL=C comes last and wins.
func runCommandEnv(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), env...), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg := cleanOutput(stderr.String())
		if msg == "" {
			msg = cleanOutput(stdout.String())
		}
		cmdline := strings.Join(append([]string{name}, args...), " ")
		if msg == "" {
			return stdout.Bytes(), fmt.Errorf("%s: %w", cmdline, err)
		}
		return stdout.Bytes(), fmt.Errorf("%s: %w: %s", cmdline, err, msg)
	}
	return stdout.Bytes(), nil
}

// cleanOutput keeps the last lines of a program's diagnostics, without
// Exim's warning about the environment, which every -C run without
// keep_environment prints and which explains nothing.
func cleanOutput(s string) string {
	const maxLines = 15
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasSuffix(t, "Warning: purging the environment.") || t == "Suggested action: use keep_environment." {
			continue
		}
		keep = append(keep, t)
	}
	if len(keep) > maxLines {
		keep = keep[len(keep)-maxLines:]
	}
	return strings.Join(keep, " / ")
}

// lookBinary returns the first of names found in PATH or in dirs.
func lookBinary(names []string, dirs ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	for _, n := range names {
		for _, d := range dirs {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("none of %s found in PATH or %s", strings.Join(names, ", "), strings.Join(dirs, ", "))
}

// reloader tells a running MTA daemon to re-read its configuration: through
// systemctl when a systemd unit of that MTA runs it, otherwise directly.
type reloader struct {
	procRoot   string
	systemdDir string // exists when systemd is the init system: "/run/systemd/system"
	systemctl  string // "" = find it in PATH
	run        execer
	timeout    time.Duration // how long a signalled daemon may take to come back
	resignal   time.Duration // how long to wait for a re-exec before signalling again
}

func newReloader(opts Options, run execer) reloader {
	return reloader{
		procRoot:   opts.ProcRoot,
		systemdDir: "/run/systemd/system",
		systemctl:  opts.Systemctl,
		run:        run,
		timeout:    10 * time.Second,
		resignal:   250 * time.Millisecond,
	}
}

// systemdUnit returns the systemd service that runs pid, when systemd is the
// init system, the service's name contains want ("exim", "postfix") and its
// main process is pid. Anything else, for example a test's private daemon
// in some other service's cgroup, gets "" and is signalled directly.
func (r reloader) systemdUnit(ctx context.Context, pid int, want string) string {
	if _, err := os.Stat(r.systemdDir); err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(r.procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return ""
	}
	unit := unitFromCgroup(string(data))
	if unit == "" || !strings.Contains(unit, want) {
		return ""
	}
	out, err := r.run(ctx, r.systemctlBinary(), "show", "--property=MainPID", "--value", unit)
	if err != nil || strings.TrimSpace(string(out)) != strconv.Itoa(pid) {
		return ""
	}
	return unit
}

func (r reloader) systemctlBinary() string {
	if r.systemctl != "" {
		return r.systemctl
	}
	return "systemctl"
}

// unitFromCgroup finds the .service a /proc/PID/cgroup file names, for
// cgroup v2 ("0::/system.slice/exim4.service") and v1's systemd hierarchy.
func unitFromCgroup(s string) string {
	for _, line := range strings.Split(s, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || (parts[0] != "0" && parts[1] != "name=systemd") {
			continue
		}
		if base := path.Base(parts[2]); strings.HasSuffix(base, ".service") {
			return base
		}
	}
	return ""
}

// reloadUnit runs systemctl reload.
func (r reloader) reloadUnit(ctx context.Context, unit string) error {
	if _, err := r.run(ctx, r.systemctlBinary(), "reload", unit); err != nil {
		return fmt.Errorf("systemctl reload %s: %w", unit, err)
	}
	return nil
}

// listeningSockets are the inodes of the listening TCP sockets process pid
// holds: its socket descriptors (/proc/PID/fd) that its network namespace's
// tables (/proc/PID/net/tcp, tcp6) list in state LISTEN.
func listeningSockets(procRoot string, pid int) map[string]bool {
	base := filepath.Join(procRoot, strconv.Itoa(pid))
	held := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(base, "fd"))
	if err != nil {
		return nil
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(base, "fd", e.Name()))
		if ino, ok := strings.CutPrefix(target, "socket:["); err == nil && ok {
			held[strings.TrimSuffix(ino, "]")] = true
		}
	}
	out := map[string]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(filepath.Join(base, "net", table))
		if err != nil {
			continue
		}
		for ino := range listeningInodes(data) {
			if held[ino] {
				out[ino] = true
			}
		}
	}
	return out
}

// listeningInodes parses /proc/net/tcp{,6}: the inodes of sockets in state
// 0A (TCP_LISTEN). Columns: sl local rem st tx:rx tr:when retrnsmt uid
// timeout inode ...
func listeningInodes(table []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(table), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		out[f[9]] = true
	}
	return out
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(procRoot string, pid int) bool {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may contain spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	state := s[i+2]
	return state != 'Z' && state != 'X' && state != 'x'
}

// readPIDFile reads a daemon's pid file; a missing file is (0, nil).
func readPIDFile(name string) (int, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: bad content %q", name, bytes.TrimSpace(data))
	}
	return pid, nil
}
