//go:build linux

package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// User is a test account.
type User struct {
	Name   string
	UID    uint32
	GID    uint32   // primary group
	Groups []uint32 // supplementary groups (without the primary one)
}

// maxAccountName is the longest account name this package generates.
const maxAccountName = 31

// generatedAccount matches only names this package generates.
var generatedAccount = regexp.MustCompile(`^` + UserPrefix + `[0-9a-f]{6}`)

// validSuffix keeps generated names acceptable to useradd and groupadd.
var validSuffix = regexp.MustCompile(`^[a-z0-9_-]*$`)

// accountName is "sgt" + 6 random hex digits + suffix, cut to 31 characters.
func accountName(suffix string) (string, error) {
	if !validSuffix.MatchString(suffix) {
		return "", fmt.Errorf("account name suffix %q: use lower-case letters, digits, '_' and '-'", suffix)
	}
	name := UserPrefix + randomHex(3) + suffix
	if len(name) > maxAccountName {
		name = name[:maxAccountName]
	}
	return name, nil
}

// NewGroup creates a group named sgt<6 hex><suffix> and deletes it when the
// test ends.
func NewGroup(t testing.TB, suffix string) (name string, gid uint32) {
	t.Helper()
	name, err := accountName(suffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim(kindAccount, name); err != nil {
		t.Fatal(err)
	}
	if out, err := runAccountCmd("groupadd", name); err != nil {
		release(kindAccount, name)
		t.Fatalf("groupadd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if err := deleteAccount("groupdel", name); err != nil {
			t.Errorf("delete test group: %v", err)
		}
		release(kindAccount, name)
	})
	return name, lookupGID(t, name)
}

// NewUser creates an account named sgt<6 hex><suffix> without a home
// directory, with shell /usr/sbin/nologin, whose primary group is
// primaryGroup ("" gives it its own group), member of the supplementary
// groups. It is deleted when the test ends, before any group created earlier.
func NewUser(t testing.TB, suffix string, primaryGroup string, supplementary ...string) User {
	t.Helper()
	name, err := accountName(suffix)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--no-create-home", "--shell", "/usr/sbin/nologin"}
	if primaryGroup != "" {
		args = append(args, "--gid", primaryGroup, "--no-user-group")
	} else {
		args = append(args, "--user-group")
	}
	if len(supplementary) > 0 {
		args = append(args, "--groups", strings.Join(supplementary, ","))
	}
	if err := claim(kindAccount, name); err != nil {
		t.Fatal(err)
	}
	if out, err := runAccountCmd("useradd", append(args, name)...); err != nil {
		release(kindAccount, name)
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if err := deleteAccount("userdel", name); err != nil {
			t.Errorf("delete test user: %v", err)
		}
		if primaryGroup == "" {
			// userdel removes the user's own group when USERGROUPS_ENAB is
			// on; this catches the other case.
			if err := deleteAccount("groupdel", name); err != nil {
				t.Errorf("delete test user's group: %v", err)
			}
		}
		release(kindAccount, name)
	})
	return lookupUser(t, name)
}

// AddToGroup adds a supplementary group to an existing test user, as an
// administrator would with usermod -aG, and refreshes u.
func AddToGroup(t testing.TB, u *User, group string) {
	t.Helper()
	if out, err := runAccountCmd("usermod", "-aG", group, u.Name); err != nil {
		t.Fatalf("usermod -aG %s %s: %v\n%s", group, u.Name, err, out)
	}
	*u = lookupUser(t, u.Name)
}

// deleteAccount runs userdel or groupdel; an account that is already gone
// (exit status 6) is not an error.
func deleteAccount(cmd, name string) error {
	out, err := runAccountCmd(cmd, name)
	if err != nil && exitCode(err) != 6 {
		return fmt.Errorf("%s %s: %v: %s", cmd, name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func lookupUser(t testing.TB, name string) User {
	t.Helper()
	u := User{Name: name}
	u.UID = parseID(t, strings.TrimSpace(run(t, "id", "-u", name)))
	u.GID = parseID(t, strings.TrimSpace(run(t, "id", "-g", name)))
	for _, g := range strings.Fields(run(t, "id", "-G", name)) {
		if gid := parseID(t, g); gid != u.GID && !slices.Contains(u.Groups, gid) {
			u.Groups = append(u.Groups, gid)
		}
	}
	return u
}

func lookupGID(t testing.TB, group string) uint32 {
	t.Helper()
	fields := strings.Split(strings.TrimSpace(run(t, "getent", "group", group)), ":")
	if len(fields) < 3 {
		t.Fatalf("getent group %s: %q", group, fields)
	}
	return parseID(t, fields[2])
}

func parseID(t testing.TB, s string) uint32 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("parse id %q: %v", s, err)
	}
	return uint32(n)
}

// RemoveLeftovers deletes network namespaces named sgt-* and users and groups
// named sgt<6 hex>... that a crashed or killed run left behind. Objects of a
// test binary that is still running (another package under `go test ./...`)
// are kept. Call it from TestMain of privileged packages, as root.
func RemoveLeftovers() error {
	var errs []error
	if out, _, err := command("ip", "netns", "list"); err != nil {
		errs = append(errs, fmt.Errorf("ip netns list: %w", err))
	} else {
		for line := range strings.Lines(string(out)) {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasPrefix(name, NetNSPrefix) && !ownedByLiveProcess(kindNetNS, name) {
				if err := deleteNetNS(name); err != nil {
					errs = append(errs, fmt.Errorf("leftover network namespace %s: %w", name, err))
				} else {
					release(kindNetNS, name)
				}
			}
		}
	}
	// Per-namespace /etc files (SetResolvConf) of namespaces that are gone
	// or leftovers.
	if dirs, err := filepath.Glob(netnsEtcDir(NetNSPrefix + "*")); err == nil {
		for _, dir := range dirs {
			if !ownedByLiveProcess(kindNetNS, filepath.Base(dir)) {
				os.RemoveAll(dir)
			}
		}
	}
	// Users first: a group cannot go while it is a user's primary group.
	for _, db := range []struct{ file, cmd string }{{"/etc/passwd", "userdel"}, {"/etc/group", "groupdel"}} {
		names, err := leftoverAccounts(db.file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, name := range names {
			if err := deleteAccount(db.cmd, name); err != nil {
				errs = append(errs, fmt.Errorf("leftover account: %w", err))
			}
		}
	}
	for _, rec := range staleRecords() {
		if rec[0] == kindAccount && accountExists(rec[1]) {
			continue // deletion failed above; keep the record for next time
		}
		release(rec[0], rec[1])
	}
	return errors.Join(errs...)
}

// leftoverAccounts lists generated account names in /etc/passwd or
// /etc/group whose creator is gone.
func leftoverAccounts(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), ":")
		if generatedAccount.MatchString(name) && !ownedByLiveProcess(kindAccount, name) {
			names = append(names, name)
		}
	}
	return names, sc.Err()
}

func accountExists(name string) bool {
	for _, file := range []string{"/etc/passwd", "/etc/group"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			if n, _, _ := strings.Cut(line, ":"); n == name {
				return true
			}
		}
	}
	return false
}
