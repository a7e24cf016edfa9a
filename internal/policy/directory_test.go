package policy

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testPasswd and testGroup are the accounts most policy tests resolve against.
//
//   - bob's primary group is mailers (2000); carol is a supplementary member.
//   - erin's primary group is ops (3000); dave is a supplementary member.
//   - frank's primary gid 4000 has no /etc/group entry.
//   - ghost is listed in mailers but has no account.
const testPasswd = `root:x:0:0:root:/root:/bin/bash
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
Debian-exim:x:101:102::/var/spool/exim4:/usr/sbin/nologin
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:2000::/home/bob:/bin/bash
carol:x:1003:1003::/home/carol:/bin/bash
dave:x:1004:1004::/home/dave:/bin/bash
erin:x:1005:3000::/home/erin:/bin/bash
frank:x:1006:4000::/home/frank:/bin/bash
smb1$:x:1100:1100::/nonexistent:/usr/sbin/nologin
`

const testGroup = `root:x:0:
list:x:38:
Debian-exim:x:102:
alice:x:1001:
mailers:x:2000:carol,ghost
carol:x:1003:
dave:x:1004:
ops:x:3000:dave
`

// testDirectory parses testPasswd and testGroup.
func testDirectory(tb testing.TB) *Directory {
	tb.Helper()
	dir, err := ParseDirectory(strings.NewReader(testPasswd), strings.NewReader(testGroup))
	if err != nil {
		tb.Fatalf("ParseDirectory(testPasswd, testGroup) = %v", err)
	}
	return dir
}

func TestParseDirectorySkipsCommentsBlankAndNIS(t *testing.T) {
	passwd := `# /etc/passwd

root:x:0:0:root:/root:/bin/bash
   # indented comment
+@netgroup::::::
-baduser::::::
+::::::
  alice:x:1001:1001::/home/alice:/bin/bash
`
	group := `# /etc/group
root:x:0:

+:::
-oldgroup:::
mailers:x:2000: alice , ,bob,
empty:x:2001:
`
	dir, err := ParseDirectory(strings.NewReader(passwd), strings.NewReader(group))
	if err != nil {
		t.Fatalf("ParseDirectory() = %v, want nil", err)
	}
	if diff := cmp.Diff([]Account{{Name: "root"}, {Name: "alice", UID: 1001, GID: 1001}}, dir.accounts); diff != "" {
		t.Errorf("ParseDirectory() accounts mismatch (-want +got):\n%s", diff)
	}
	wantGroups := []Group{
		{Name: "root"},
		{Name: "mailers", GID: 2000, Members: []string{"alice", "bob"}},
		{Name: "empty", GID: 2001},
	}
	if diff := cmp.Diff(wantGroups, dir.groups); diff != "" {
		t.Errorf("ParseDirectory() groups mismatch (-want +got):\n%s", diff)
	}
	for _, name := range []string{"+@netgroup", "-baduser", "+", "baduser", ""} {
		if a, ok := dir.User(name); ok {
			t.Errorf("User(%q) = %+v, true, want not found", name, a)
		}
	}
	if g, ok := dir.GroupByName("oldgroup"); ok {
		t.Errorf(`GroupByName("oldgroup") = %+v, true, want not found`, g)
	}
}

func TestParseDirectoryNamesBadLine(t *testing.T) {
	const okPasswd = "root:x:0:0:root:/root:/bin/bash\n"
	const okGroup = "root:x:0:\n"
	tests := []struct {
		name    string
		passwd  string
		group   string
		wantErr []string
	}{
		{
			name:    "passwd line with too few fields",
			passwd:  "# comment\nroot:x:0:0:root:/root:/bin/bash\nalice:x:1001\n",
			group:   okGroup,
			wantErr: []string{"passwd line 3", "7 colon-separated fields"},
		},
		{
			name:    "passwd line with empty name",
			passwd:  ":x:1001:1001::/home:/bin/sh\n",
			group:   okGroup,
			wantErr: []string{"passwd line 1"},
		},
		{
			name:    "passwd non-numeric uid",
			passwd:  "root:x:0:0:root:/root:/bin/bash\nalice:x:abc:1001::/home/alice:/bin/bash\n",
			group:   okGroup,
			wantErr: []string{"passwd line 2", "uid", `"abc"`},
		},
		{
			name:    "passwd uid beyond 32 bits",
			passwd:  "alice:x:4294967296:1001::/home/alice:/bin/bash\n",
			group:   okGroup,
			wantErr: []string{"passwd line 1", "uid", `"4294967296"`},
		},
		{
			name:    "passwd negative uid",
			passwd:  "alice:x:-1:1001::/home/alice:/bin/bash\n",
			group:   okGroup,
			wantErr: []string{"passwd line 1", "uid", `"-1"`},
		},
		{
			name:    "passwd non-numeric gid",
			passwd:  "alice:x:1001:staff::/home/alice:/bin/bash\n",
			group:   okGroup,
			wantErr: []string{"passwd line 1", "gid", `"staff"`},
		},
		{
			name:    "group line with too few fields",
			passwd:  okPasswd,
			group:   "root:x:0:\n\nmailers:x:2000\n",
			wantErr: []string{"group line 3", "4 colon-separated fields"},
		},
		{
			name:    "group non-numeric gid",
			passwd:  okPasswd,
			group:   "root:x:0:\nmailers:x:twothousand:bob\n",
			wantErr: []string{"group line 2", "gid", `"twothousand"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := ParseDirectory(strings.NewReader(tt.passwd), strings.NewReader(tt.group))
			if err == nil {
				t.Fatalf("ParseDirectory() = %+v, nil, want error mentioning %q", dir, tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("ParseDirectory() error = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestParseDirectoryLongGroupLine(t *testing.T) {
	// Large sites have groups with thousands of members; bufio's default 64 KiB
	// token limit must not cut them off.
	var members []string
	var passwd strings.Builder
	for i := range 20000 {
		name := "user" + strings.Repeat("x", 3) + strconv.Itoa(i)
		members = append(members, name)
		passwd.WriteString(name + ":x:" + strconv.Itoa(10000+i) + ":100::/home:/bin/sh\n")
	}
	group := "staff:x:50:" + strings.Join(members, ",") + "\n"
	dir, err := ParseDirectory(strings.NewReader(passwd.String()), strings.NewReader(group))
	if err != nil {
		t.Fatalf("ParseDirectory() with a %d-byte group line = %v, want nil", len(group), err)
	}
	g, ok := dir.GroupByName("staff")
	if !ok || len(g.Members) != len(members) {
		t.Fatalf(`GroupByName("staff") = %d members, %v, want %d members, true`, len(g.Members), ok, len(members))
	}
}

func TestDirectoryFirstEntryWins(t *testing.T) {
	dir := NewDirectory(
		[]Account{{Name: "root", UID: 0}, {Name: "toor", UID: 0}, {Name: "root", UID: 99}},
		[]Group{{Name: "wheel", GID: 10}, {Name: "admin", GID: 10}, {Name: "wheel", GID: 11}},
	)
	if a, ok := dir.User("root"); !ok || a.UID != 0 {
		t.Errorf(`User("root") = %+v, %v, want uid 0, true`, a, ok)
	}
	if a, ok := dir.UserByID(0); !ok || a.Name != "root" {
		t.Errorf(`UserByID(0) = %+v, %v, want root, true`, a, ok)
	}
	if a, ok := dir.User("toor"); !ok || a.UID != 0 {
		t.Errorf(`User("toor") = %+v, %v, want uid 0, true`, a, ok)
	}
	if g, ok := dir.GroupByName("wheel"); !ok || g.GID != 10 {
		t.Errorf(`GroupByName("wheel") = %+v, %v, want gid 10, true`, g, ok)
	}
	if g, ok := dir.GroupByID(10); !ok || g.Name != "wheel" {
		t.Errorf(`GroupByID(10) = %+v, %v, want wheel, true`, g, ok)
	}
	if a, ok := dir.UserByID(12345); ok {
		t.Errorf("UserByID(12345) = %+v, true, want not found", a)
	}
	if g, ok := dir.GroupByID(12345); ok {
		t.Errorf("GroupByID(12345) = %+v, true, want not found", g)
	}
}

func TestResolvePrincipalCases(t *testing.T) {
	dir := testDirectory(t)
	tests := []struct {
		name    string
		kind    PrincipalKind
		ref     string
		want    Principal
		wantErr []string // substrings; nil means success
	}{
		{name: "user by name", kind: KindUser, ref: "alice", want: Principal{Kind: KindUser, Name: "alice", ID: 1001}},
		{name: "user by name trimmed", kind: KindUser, ref: "  alice\t", want: Principal{Kind: KindUser, Name: "alice", ID: 1001}},
		{name: "user name with capital and dash", kind: KindUser, ref: "Debian-exim", want: Principal{Kind: KindUser, Name: "Debian-exim", ID: 101}},
		{name: "samba machine account", kind: KindUser, ref: "smb1$", want: Principal{Kind: KindUser, Name: "smb1$", ID: 1100}},
		{name: "user by uid with account", kind: KindUser, ref: "1001", want: Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}},
		{name: "user by uid without account", kind: KindUser, ref: "4242", want: Principal{Kind: KindUser, ID: 4242, ByID: true}},
		{name: "root by uid", kind: KindUser, ref: "0", want: Principal{Kind: KindUser, Name: "root", ID: 0, ByID: true}},
		{name: "leading zeros are a number", kind: KindUser, ref: "01001", want: Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}},
		{name: "largest usable uid", kind: KindUser, ref: "4294967294", want: Principal{Kind: KindUser, ID: 4294967294, ByID: true}},
		{name: "uid -1 refused", kind: KindUser, ref: "4294967295", wantErr: []string{"4294967295", "outside 0-4294967294"}},
		{name: "uid beyond 32 bits refused", kind: KindUser, ref: "4294967296", wantErr: []string{"4294967296", "outside"}},
		{name: "huge uid refused", kind: KindUser, ref: "99999999999999999999999", wantErr: []string{"99999999999999999999999"}},
		{name: "unknown user", kind: KindUser, ref: "ghost", wantErr: []string{`no such user "ghost"`, "getent passwd ghost"}},
		{name: "group name is not a user", kind: KindUser, ref: "mailers", wantErr: []string{`no such user "mailers"`}},
		{name: "user name with space", kind: KindUser, ref: "al ice", wantErr: []string{"invalid user name", `"al ice"`}},
		{name: "user name with shell metacharacters", kind: KindUser, ref: "alice;reboot", wantErr: []string{"invalid user name", `"alice;reboot"`}},
		{name: "user name with colon", kind: KindUser, ref: "alice:x", wantErr: []string{"invalid user name"}},
		{name: "user name too long", kind: KindUser, ref: strings.Repeat("a", 257), wantErr: []string{"invalid user name"}},
		{name: "empty user", kind: KindUser, ref: "", wantErr: []string{"empty user name"}},
		{name: "blank user", kind: KindUser, ref: "   ", wantErr: []string{"empty user name"}},
		{name: "group by name", kind: KindGroup, ref: "mailers", want: Principal{Kind: KindGroup, Name: "mailers", ID: 2000}},
		{name: "group by gid with entry", kind: KindGroup, ref: "3000", want: Principal{Kind: KindGroup, Name: "ops", ID: 3000, ByID: true}},
		{name: "group by gid without entry", kind: KindGroup, ref: "4000", want: Principal{Kind: KindGroup, ID: 4000, ByID: true}},
		{name: "gid -1 refused", kind: KindGroup, ref: "4294967295", wantErr: []string{"group id 4294967295", "outside"}},
		{name: "unknown group", kind: KindGroup, ref: "nogroup", wantErr: []string{`no such group "nogroup"`, "getent group nogroup"}},
		{name: "user name is not a group", kind: KindGroup, ref: "bob", wantErr: []string{`no such group "bob"`}},
		{name: "invalid group name", kind: KindGroup, ref: "mail/ers", wantErr: []string{"invalid group name", `"mail/ers"`}},
		{name: "empty group", kind: KindGroup, ref: "", wantErr: []string{"empty group name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := dir.ResolvePrincipal(tt.kind, tt.ref)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ResolvePrincipal(%s, %q) = %+v, nil, want error", tt.kind, tt.ref, got)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("ResolvePrincipal(%s, %q) error = %q, want it to mention %q", tt.kind, tt.ref, err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolvePrincipal(%s, %q) = %v, want %+v", tt.kind, tt.ref, err, tt.want)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ResolvePrincipal(%s, %q) mismatch (-want +got):\n%s", tt.kind, tt.ref, diff)
			}
		})
	}
}
