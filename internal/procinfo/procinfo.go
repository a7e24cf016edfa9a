// Package procinfo names the process behind a blocked connection attempt from
// /proc/PID while the process still exists: its executable, command line,
// working directory and cgroup, and from the cgroup path the systemd unit
// and the container, and from the command line the PHP-FPM pool. Backends
// that report a pid (bpf) make events say which program, script, service or
// container tried; the proc root is configurable so tests use a fake tree.
package procinfo

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultRoot is where the kernel shows processes.
const DefaultRoot = "/proc"

// maxCmdline is how much of a command line is kept.
const maxCmdline = 256

// Info is what /proc told of one process; empty where it could not be read.
type Info struct {
	Comm      string
	Exe       string
	Cmdline   string // first 256 bytes, NULs as spaces
	Cwd       string
	Cgroup    string // the process's cgroup path, "/system.slice/cron.service"
	Unit      string // derived from Cgroup: "cron.service", "user-1001.slice"
	Container string // derived from Cgroup: a Docker/containerd/CRI-O/Podman id, an LXC name
	Pool      string // derived from Cmdline: a PHP-FPM pool
}

// Reader reads processes under Root ("" means DefaultRoot).
type Reader struct {
	Root string
}

// Read describes process pid. ok is false when the process is gone (or
// never existed); fields that cannot be read (exe and cwd of another user's
// process without privileges) stay empty.
func (r Reader) Read(pid uint32) (info Info, ok bool) {
	root := r.Root
	if root == "" {
		root = DefaultRoot
	}
	dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
	if _, err := os.Stat(dir); err != nil {
		return Info{}, false
	}
	if b, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		info.Comm = strings.TrimRight(string(b), "\n")
	}
	info.Exe, _ = os.Readlink(filepath.Join(dir, "exe"))
	info.Cwd, _ = os.Readlink(filepath.Join(dir, "cwd"))
	if f, err := os.Open(filepath.Join(dir, "cmdline")); err == nil {
		buf := make([]byte, maxCmdline)
		n, _ := f.Read(buf)
		f.Close()
		info.Cmdline = strings.TrimRight(string(bytes.ReplaceAll(buf[:n], []byte{0}, []byte{' '})), " ")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup")); err == nil {
		info.Cgroup = cgroupPath(b)
	}
	info.Unit, info.Container, info.Pool = Unit(info.Cgroup), Container(info.Cgroup), Pool(info.Cmdline)
	return info, true
}

// cgroupPath picks the process's path from /proc/PID/cgroup: the unified
// hierarchy's line ("0::/path"), unless in hybrid mode that is the root and
// systemd's named hierarchy ("1:name=systemd:/path") knows more.
func cgroupPath(b []byte) string {
	var unified, named string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrl, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && ctrl == "":
			unified = path
		case ctrl == "name=systemd":
			named = path
		}
	}
	if (unified == "" || unified == "/") && named != "" {
		return named
	}
	return unified
}

// Unit is the systemd unit of a cgroup path: the innermost service or
// scope, except that a login session (session-N.scope) is named by its
// user's slice (user-1001.slice), which is what stays the same across
// logins; a path with only slices names the innermost user slice.
func Unit(cgroup string) string {
	parts := strings.Split(strings.Trim(cgroup, "/"), "/")
	userSlice := func(below int) string {
		for i := below; i >= 0; i-- {
			if strings.HasPrefix(parts[i], "user-") && strings.HasSuffix(parts[i], ".slice") {
				return parts[i]
			}
		}
		return ""
	}
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		switch {
		case strings.HasPrefix(p, "session-") && strings.HasSuffix(p, ".scope"):
			if u := userSlice(i - 1); u != "" {
				return u
			}
			return p
		case strings.HasSuffix(p, ".service"), strings.HasSuffix(p, ".scope"):
			return p
		}
	}
	return userSlice(len(parts) - 1)
}

// containerPrefixes are the scope names container engines give their
// containers under systemd: "docker-ID.scope" and so on.
var containerPrefixes = []string{"docker-", "cri-containerd-", "crio-", "libpod-"}

// Container is the container a cgroup path belongs to: the id of a Docker,
// containerd, CRI-O or Podman container (systemd or cgroupfs driver,
// Kubernetes pods included), or an LXC container's name. A Podman monitor
// (libpod-conmon-ID.scope) is not the container.
func Container(cgroup string) string {
	parts := strings.Split(strings.Trim(cgroup, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		p := parts[i]
		if name, ok := strings.CutPrefix(p, "lxc.payload."); ok {
			return name
		}
		if i == 1 && parts[0] == "lxc" { // LXC before 4.0: /lxc/NAME
			return p
		}
		if id, ok := strings.CutSuffix(p, ".scope"); ok {
			if strings.HasPrefix(id, "libpod-conmon-") {
				continue
			}
			for _, prefix := range containerPrefixes {
				if rest, ok := strings.CutPrefix(id, prefix); ok && isHexID(rest) {
					return rest
				}
			}
		}
		// cgroupfs drivers: /docker/ID, /kubepods/.../podUID/ID.
		if isHexID(p) && i > 0 && (parts[i-1] == "docker" || strings.HasPrefix(parts[i-1], "pod") || parts[0] == "kubepods") {
			return p
		}
	}
	return ""
}

// isHexID reports whether s is a 64-digit hex container id.
func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Pool is the PHP-FPM pool of a worker, from the title it gives itself
// ("php-fpm: pool www"); "" for anything else.
func Pool(cmdline string) string {
	rest, ok := strings.CutPrefix(cmdline, "php-fpm: pool ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(rest)
}
