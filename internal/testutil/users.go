//go:build linux

package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// User is a test account.
type User struct {
	Name   string
	UID    uint32
	GID    uint32   // primary group
	Groups []uint32 // supplementary groups
}

// leftoverName matches only names this package generates.
var leftoverName = regexp.MustCompile(`^` + UserPrefix + `[0-9a-f]{6}`)

func accountName(suffix string) string {
	name := UserPrefix + randomHex(3) + suffix
	if len(name) > 31 {
		name = name[:31]
	}
	return name
}

// NewGroup creates a group and deletes it when the test ends.
func NewGroup(t testing.TB, suffix string) (name string, gid uint32) {
	t.Helper()
	name = accountName(suffix)
	run(t, "groupadd", name)
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
	return name, parseUint32(t, strings.Split(strings.TrimSpace(run(t, "getent", "group", name)), ":")[2])
}

// NewUser creates an account without a home directory or login shell. With
// primaryGroup "" the account gets its own group. It is deleted when the test
// ends.
func NewUser(t testing.TB, suffix string, primaryGroup string, supplementary ...string) User {
	t.Helper()
	name := accountName(suffix)
	args := []string{"--no-create-home", "--shell", "/usr/sbin/nologin"}
	if primaryGroup != "" {
		args = append(args, "--gid", primaryGroup, "--no-user-group")
	} else {
		args = append(args, "--user-group")
	}
	if len(supplementary) > 0 {
		args = append(args, "--groups", strings.Join(supplementary, ","))
	}
	run(t, "useradd", append(args, name)...)
	t.Cleanup(func() {
		exec.Command("userdel", name).Run()
		if primaryGroup == "" {
			exec.Command("groupdel", name).Run() // in case USERGROUPS_ENAB is off
		}
	})
	return lookupUser(t, name)
}

// AddToGroup adds a supplementary group to an existing test user, as an
// administrator would with usermod -aG.
func AddToGroup(t testing.TB, u *User, group string) {
	t.Helper()
	run(t, "usermod", "-aG", group, u.Name)
	*u = lookupUser(t, u.Name)
}

func lookupUser(t testing.TB, name string) User {
	t.Helper()
	u := User{Name: name}
	u.UID = parseUint32(t, strings.TrimSpace(run(t, "id", "-u", name)))
	u.GID = parseUint32(t, strings.TrimSpace(run(t, "id", "-g", name)))
	for _, g := range strings.Fields(run(t, "id", "-G", name)) {
		if gid := parseUint32(t, g); gid != u.GID {
			u.Groups = append(u.Groups, gid)
		}
	}
	return u
}

func parseUint32(t testing.TB, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("parse id %q: %v", s, err)
	}
	return uint32(n)
}

// RemoveLeftovers deletes namespaces, users and groups that a crashed run of
// these helpers left behind. Only names this package generates are touched.
func RemoveLeftovers() error {
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasPrefix(name, NetNSPrefix) {
				exec.Command("ip", "netns", "delete", name).Run()
			}
		}
	}
	if dirs, err := filepath.Glob("/etc/netns/" + NetNSPrefix + "*"); err == nil {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
	}
	for _, db := range []struct{ file, cmd string }{{"/etc/passwd", "userdel"}, {"/etc/group", "groupdel"}} {
		f, err := os.Open(db.file)
		if err != nil {
			return err
		}
		var names []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, _, _ := strings.Cut(sc.Text(), ":")
			if leftoverName.MatchString(name) {
				names = append(names, name)
			}
		}
		f.Close()
		for _, n := range names {
			exec.Command(db.cmd, n).Run()
		}
	}
	return nil
}
