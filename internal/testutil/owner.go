//go:build linux

package testutil

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Owner records let RemoveLeftovers tell a crashed run's namespaces and
// accounts from those of a test binary that is running right now: go test
// runs packages in parallel, and each privileged package's TestMain calls
// RemoveLeftovers. Before creating an object, this package writes
// <ownerDir>/<kind>-<name> holding the creating process's pid and start time;
// the object counts as a leftover only when that process is gone.
var ownerDir = "/run/smtpguard-testutil"

const (
	kindNetNS   = "netns"
	kindAccount = "account" // users and groups; a user's own group has its name
)

func recordPath(kind, name string) string { return filepath.Join(ownerDir, kind+"-"+name) }

// claim records that this process owns kind/name; call it before creating.
func claim(kind, name string) error {
	if err := os.MkdirAll(ownerDir, 0o700); err != nil {
		return fmt.Errorf("owner record for %s %s: %w", kind, name, err)
	}
	start, err := processStart(os.Getpid())
	if err != nil {
		return fmt.Errorf("owner record for %s %s: %w", kind, name, err)
	}
	rec := fmt.Sprintf("%d %d\n", os.Getpid(), start)
	if err := os.WriteFile(recordPath(kind, name), []byte(rec), 0o600); err != nil {
		return fmt.Errorf("owner record for %s %s: %w", kind, name, err)
	}
	return nil
}

// release forgets the record; call it after deleting the object.
func release(kind, name string) { os.Remove(recordPath(kind, name)) }

// ownedByLiveProcess reports whether kind/name was created by a process that
// still runs.
func ownedByLiveProcess(kind, name string) bool {
	data, err := os.ReadFile(recordPath(kind, name))
	if err != nil {
		return false
	}
	return recordAlive(data)
}

// recordAlive parses "pid starttime" and checks that the same process (not a
// later one that reused the pid) still exists.
func recordAlive(rec []byte) bool {
	f := strings.Fields(string(rec))
	if len(f) != 2 {
		return false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return false
	}
	now, err := processStart(pid)
	return err == nil && now == start
}

// processStart is the process's start time in clock ticks since boot
// (field 22 of /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:])) // fields[0] is field 3
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// staleRecords lists records whose owner is gone, as kind and name.
func staleRecords() [][2]string {
	entries, err := os.ReadDir(ownerDir)
	if err != nil {
		return nil
	}
	var stale [][2]string
	for _, e := range entries {
		kind, name, ok := strings.Cut(e.Name(), "-")
		if !ok || (kind != kindNetNS && kind != kindAccount) {
			continue
		}
		if !ownedByLiveProcess(kind, name) {
			stale = append(stale, [2]string{kind, name})
		}
	}
	return stale
}
