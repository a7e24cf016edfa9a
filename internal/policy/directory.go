package policy

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Account is one line of /etc/passwd that matters to us.
type Account struct {
	Name string
	UID  uint32
	GID  uint32 // primary group
}

// Group is one line of /etc/group.
type Group struct {
	Name    string
	GID     uint32
	Members []string // supplementary members, by user name
}

// Directory is a snapshot of the system's users and groups. Kernel matches see
// only a socket's uid (and primary gid), so groups must be expanded into uids
// from this snapshot, primary and supplementary members alike.
type Directory struct {
	accounts    []Account
	groups      []Group
	userByName  map[string]int
	userByID    map[uint32]int
	groupByName map[string]int
	groupByID   map[uint32]int
}

// NewDirectory builds a directory from parsed entries. Where a name or id appears
// twice the first entry wins, as it does for getpwnam(3).
func NewDirectory(accounts []Account, groups []Group) *Directory {
	d := &Directory{
		accounts:    accounts,
		groups:      groups,
		userByName:  map[string]int{},
		userByID:    map[uint32]int{},
		groupByName: map[string]int{},
		groupByID:   map[uint32]int{},
	}
	for i, a := range accounts {
		if _, ok := d.userByName[a.Name]; !ok {
			d.userByName[a.Name] = i
		}
		if _, ok := d.userByID[a.UID]; !ok {
			d.userByID[a.UID] = i
		}
	}
	for i, g := range groups {
		if _, ok := d.groupByName[g.Name]; !ok {
			d.groupByName[g.Name] = i
		}
		if _, ok := d.groupByID[g.GID]; !ok {
			d.groupByID[g.GID] = i
		}
	}
	return d
}

// ParseDirectory reads passwd(5) and group(5) formatted text. Comment, blank and
// NIS compat ("+"/"-") lines are skipped; a malformed line is an error naming it.
func ParseDirectory(passwd, group io.Reader) (*Directory, error) {
	var accounts []Account
	err := eachEntry(passwd, "passwd", 7, func(f []string) error {
		uid, err := parseID(f[2])
		if err != nil {
			return fmt.Errorf("uid: %w", err)
		}
		gid, err := parseID(f[3])
		if err != nil {
			return fmt.Errorf("gid: %w", err)
		}
		accounts = append(accounts, Account{Name: f[0], UID: uid, GID: gid})
		return nil
	})
	if err != nil {
		return nil, err
	}
	var groups []Group
	err = eachEntry(group, "group", 4, func(f []string) error {
		gid, err := parseID(f[2])
		if err != nil {
			return fmt.Errorf("gid: %w", err)
		}
		var members []string
		for m := range strings.SplitSeq(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		groups = append(groups, Group{Name: f[0], GID: gid, Members: members})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return NewDirectory(accounts, groups), nil
}

func eachEntry(r io.Reader, what string, fields int, fn func([]string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024) // large groups have long member lists
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' || text[0] == '+' || text[0] == '-' {
			continue
		}
		f := strings.Split(text, ":")
		if len(f) < fields || f[0] == "" {
			return fmt.Errorf("%s line %d: expected %d colon-separated fields", what, line, fields)
		}
		if err := fn(f); err != nil {
			return fmt.Errorf("%s line %d: %w", what, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric id", s)
	}
	return uint32(n), nil
}

// User looks an account up by name.
func (d *Directory) User(name string) (Account, bool) {
	i, ok := d.userByName[name]
	if !ok {
		return Account{}, false
	}
	return d.accounts[i], true
}

// UserByID looks an account up by uid.
func (d *Directory) UserByID(uid uint32) (Account, bool) {
	i, ok := d.userByID[uid]
	if !ok {
		return Account{}, false
	}
	return d.accounts[i], true
}

// GroupByName looks a group up by name.
func (d *Directory) GroupByName(name string) (Group, bool) {
	i, ok := d.groupByName[name]
	if !ok {
		return Group{}, false
	}
	return d.groups[i], true
}

// GroupByID looks a group up by gid.
func (d *Directory) GroupByID(gid uint32) (Group, bool) {
	i, ok := d.groupByID[gid]
	if !ok {
		return Group{}, false
	}
	return d.groups[i], true
}

// ResolvePrincipal turns what an administrator typed ("alice", "1001") into a
// Principal. Names must exist. Numbers are accepted without an account, since
// containers and NSS-backed directories run uids that /etc/passwd does not list.
func (d *Directory) ResolvePrincipal(kind PrincipalKind, ref string) (Principal, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return Principal{}, fmt.Errorf("empty %s name", kind)
	}
	if isNumeric(ref) {
		id, err := strconv.ParseUint(ref, 10, 32)
		if err != nil || id == 4294967295 { // (uid_t)-1 means "no change" to the kernel
			return Principal{}, fmt.Errorf("%s id %s is outside 0-4294967294", kind, ref)
		}
		pr := Principal{Kind: kind, ID: uint32(id), ByID: true}
		if kind == KindUser {
			if a, ok := d.UserByID(pr.ID); ok {
				pr.Name = a.Name
			}
		} else if g, ok := d.GroupByID(pr.ID); ok {
			pr.Name = g.Name
		}
		return pr, nil
	}
	if !validName(ref) {
		return Principal{}, fmt.Errorf("invalid %s name %q", kind, ref)
	}
	if kind == KindUser {
		a, ok := d.User(ref)
		if !ok {
			return Principal{}, fmt.Errorf("no such user %q: check the name with 'getent passwd %s'", ref, ref)
		}
		return Principal{Kind: kind, Name: a.Name, ID: a.UID}, nil
	}
	g, ok := d.GroupByName(ref)
	if !ok {
		return Principal{}, fmt.Errorf("no such group %q: check the name with 'getent group %s'", ref, ref)
	}
	return Principal{Kind: kind, Name: g.Name, ID: g.GID}, nil
}

func isNumeric(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// validName accepts what useradd and common NSS backends accept, which is wider
// than POSIX (Debian-exim has a capital, Samba machine accounts end with $).
func validName(s string) bool {
	if len(s) > 256 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '_', r == '-', r == '.', r == '$', r == '@':
		default:
			return false
		}
	}
	return true
}
