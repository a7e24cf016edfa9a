package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const passwd = `# comment
root:x:0:0:root:/root:/bin/bash
Debian-exim:x:101:102::/var/spool/exim4:/usr/sbin/nologin
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:2000::/home/bob:/bin/bash
carol:x:1003:1003::/home/carol:/bin/bash
+nisuser
`

// mailers (2000) is bob's primary group and carol's supplementary one.
const group = `root:x:0:
alice:x:1001:
mailers:x:2000:carol,ghost
carol:x:1003:
empty:x:3000:
`

func testDir(t *testing.T) *Directory {
	t.Helper()
	d, err := ParseDirectory(strings.NewReader(passwd), strings.NewReader(group))
	if err != nil {
		t.Fatalf("ParseDirectory() = %v", err)
	}
	return d
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{in: "25,465,587", want: []uint16{25, 465, 587}},
		{in: " 587, 25 ", want: []uint16{25, 587}},
		{in: "1,65535", want: []uint16{1, 65535}},
		{in: "", wantErr: "no ports given"},
		{in: "0", wantErr: "port 0 is outside 1-65535"},
		{in: "65536", wantErr: "port 65536 is outside"},
		{in: "-1", wantErr: `port "-1" is not a number`},
		{in: "abc", wantErr: `port "abc" is not a number`},
		{in: "25,,465", wantErr: "empty entry"},
		{in: "25,25", wantErr: "port 25 is listed twice"},
		{in: "25;465", wantErr: `"25;465" is not a number`},
		{in: "99999999999999999999", wantErr: "not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePorts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePorts(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseModeAndOnOff(t *testing.T) {
	for in, want := range map[string]Mode{"reject": ModeReject, "LOG": ModeLog, " reject ": ModeReject} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseMode("redirect"); err == nil || !strings.Contains(err.Error(), "not available") {
		t.Errorf("ParseMode(redirect) = %v, want 'not available'", err)
	}
	if _, err := ParseMode("drop"); err == nil || !strings.Contains(err.Error(), `unknown mode "drop"`) {
		t.Errorf("ParseMode(drop) = %v", err)
	}
	for in, want := range map[string]bool{"on": true, "OFF": false, "yes": true, "0": false} {
		if got, err := ParseOnOff(in); err != nil || got != want {
			t.Errorf("ParseOnOff(%q) = %t, %v; want %t", in, got, err, want)
		}
	}
	if _, err := ParseOnOff("maybe"); err == nil {
		t.Error("ParseOnOff(maybe) accepted")
	}
}

func TestParseDirectoryErrors(t *testing.T) {
	_, err := ParseDirectory(strings.NewReader("root:x:0:0::/:/bin/sh\nbroken:x:1\n"), strings.NewReader(""))
	if err == nil || !strings.Contains(err.Error(), "passwd line 2") {
		t.Errorf("malformed passwd: %v, want the line number", err)
	}
	_, err = ParseDirectory(strings.NewReader("a:x:one:0::/:/bin/sh\n"), strings.NewReader(""))
	if err == nil || !strings.Contains(err.Error(), `"one" is not a numeric id`) {
		t.Errorf("non-numeric uid: %v", err)
	}
}

func TestResolvePrincipal(t *testing.T) {
	d := testDir(t)
	tests := []struct {
		kind    PrincipalKind
		ref     string
		want    Principal
		wantErr string
	}{
		{KindUser, "alice", Principal{Kind: KindUser, Name: "alice", ID: 1001}, ""},
		{KindUser, "1001", Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}, ""},
		{KindUser, "5555", Principal{Kind: KindUser, ID: 5555, ByID: true}, ""},
		{KindGroup, "mailers", Principal{Kind: KindGroup, Name: "mailers", ID: 2000}, ""},
		{KindGroup, "2000", Principal{Kind: KindGroup, Name: "mailers", ID: 2000, ByID: true}, ""},
		{KindUser, "mallory", Principal{}, `no such user "mallory"`},
		{KindGroup, "nogroup", Principal{}, `no such group "nogroup"`},
		{KindUser, "a;b", Principal{}, "invalid user name"},
		{KindUser, "", Principal{}, "empty user name"},
		{KindUser, "4294967295", Principal{}, "outside 0-4294967294"},
		{KindUser, "99999999999", Principal{}, "outside"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind)+" "+tt.ref, func(t *testing.T) {
			got, err := d.ResolvePrincipal(tt.kind, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolvePrincipal(%s, %q) = %v, want error %q", tt.kind, tt.ref, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ResolvePrincipal(%s, %q) (-want +got):\n%s", tt.kind, tt.ref, diff)
			}
		})
	}
}

func TestAllowRevoke(t *testing.T) {
	p := Default()
	alice := Principal{Kind: KindUser, Name: "alice", ID: 1001}
	if err := p.Allow(alice); err != nil {
		t.Fatal(err)
	}
	if err := p.Allow(Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}); !errors.Is(err, ErrAlreadyAllowed) {
		t.Errorf("Allow(uid 1001 after alice) = %v, want ErrAlreadyAllowed", err)
	}
	c := p.Clone()
	c.Users[0].Name = "changed"
	if p.Users[0].Name != "alice" {
		t.Error("Clone() aliases the users slice")
	}
	if err := p.Revoke(Principal{Kind: KindUser, Name: "bob"}); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Revoke(bob) = %v, want ErrNotAllowed", err)
	}
	if err := p.Revoke(alice); err != nil || len(p.Users) != 0 {
		t.Errorf("Revoke(alice) = %v, users %v", err, p.Users)
	}
}

func TestResolve(t *testing.T) {
	d := testDir(t)
	p := Default()
	p.Users = []Principal{{Kind: KindUser, Name: "alice", ID: 1001}, {Kind: KindUser, ID: 7777, ByID: true}, {Kind: KindUser, Name: "deleted", ID: 1500}}
	p.Groups = []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}, {Kind: KindGroup, Name: "gone", ID: 4000}}
	sys := []SystemUser{{Name: "Debian-exim", Reason: "MTA exim"}, {Name: "list", Reason: "list manager mailman"}}
	r := Resolve(p, d, sys)
	// root, exim, alice, bob (primary mailers), carol (supplementary), 7777;
	// "list" has no account here and "ghost" in mailers has none either.
	if diff := cmp.Diff([]uint32{0, 101, 1001, 1002, 1003, 7777}, r.UIDs); diff != "" {
		t.Errorf("Resolve() uids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`allowed user "deleted" no longer exists`, `allowed group "gone" no longer exists`}, r.Unresolved); diff != "" {
		t.Errorf("Resolve() unresolved (-want +got):\n%s", diff)
	}
	for _, g := range r.Grants {
		if g.UID == 1003 && (g.User != "carol" || !slices.Equal(g.Reasons, []string{"allowed group mailers"})) {
			t.Errorf("grant for carol = %+v", g)
		}
	}
	// A uid allowed twice lists both reasons.
	p.Users = append(p.Users, Principal{Kind: KindUser, Name: "bob", ID: 1002})
	for _, g := range Resolve(p, d, nil).Grants {
		if g.UID == 1002 && len(g.Reasons) != 2 {
			t.Errorf("bob allowed as user and via group: reasons %v, want both", g.Reasons)
		}
	}
	// A group given by gid expands the same way.
	p = Default()
	p.Groups = []Principal{{Kind: KindGroup, ID: 2000, ByID: true}}
	if got := Resolve(p, d, nil).UIDs; !slices.Equal(got, []uint32{0, 1002, 1003}) {
		t.Errorf("group by gid resolves to %v", got)
	}
}

func TestTrace(t *testing.T) {
	rs := Compile(Policy{Mode: ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true}, Resolution{UIDs: []uint32{0, 101}})
	noLocal := rs
	noLocal.AllowLocal = false
	logRS := rs
	logRS.Mode = ModeLog
	tests := []struct {
		name string
		rs   Ruleset
		pkt  Packet
		want Verdict
	}{
		{"non-SMTP port for anyone", rs, Packet{UID: 1000, DstPort: 443}, VerdictAccept},
		{"ordinary user to 25", rs, Packet{UID: 1000, DstPort: 25}, VerdictReject},
		{"ordinary user to 587", rs, Packet{UID: 1000, DstPort: 587}, VerdictReject},
		{"root", rs, Packet{UID: 0, DstPort: 25}, VerdictAccept},
		{"MTA user", rs, Packet{UID: 101, DstPort: 465}, VerdictAccept},
		{"local delivery", rs, Packet{UID: 1000, DstPort: 25, DstLocal: true}, VerdictAccept},
		{"local without allow-local", noLocal, Packet{UID: 1000, DstPort: 25, DstLocal: true}, VerdictReject},
		{"log mode", logRS, Packet{UID: 1000, DstPort: 25}, VerdictLog},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rs.Trace(tt.pkt); got != tt.want {
				t.Errorf("Trace(%+v) = %s, want %s", tt.pkt, got, tt.want)
			}
		})
	}
	if rs.LogGroup != DefaultLogGroup {
		t.Errorf("Compile() log group = %d, want %d", rs.LogGroup, DefaultLogGroup)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	p := Default()
	p.Mode = "drop"
	p.Ports = []uint16{25, 25}
	p.Users = []Principal{{Kind: KindUser, Name: "alice"}, {Kind: KindUser, Name: "mallory"}}
	err := Validate(p, testDir(t))
	for _, want := range []string{"mode:", "ports: port 25 is listed twice", `allowed_users[1]: no such user "mallory"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestPolicyFileRoundTrip(t *testing.T) {
	d := testDir(t)
	p := Default()
	p.Enabled, p.Backend, p.Mode, p.AllowLocal = true, "nft", ModeLog, false
	p.Ports = []uint16{25, 2525}
	p.Users = []Principal{{Kind: KindUser, Name: "alice", ID: 1001}, {Kind: KindUser, ID: 7777, ByID: true}}
	p.Groups = []Principal{{Kind: KindGroup, Name: "mailers", ID: 2000}}
	for _, format := range []Format{FormatTOML, FormatYAML} {
		t.Run(string(format), func(t *testing.T) {
			data, err := ToFile(p).Encode(format)
			if err != nil {
				t.Fatal(err)
			}
			f, err := DecodeFile(data, format)
			if err != nil {
				t.Fatalf("DecodeFile(%s) = %v\n%s", format, err, data)
			}
			got, err := f.Policy(d)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(p) {
				t.Errorf("round trip through %s:\n%s\ngot %+v\nwant %+v", format, data, got, p)
			}
		})
	}
}

func TestDecodeFileIsStrict(t *testing.T) {
	tests := []struct {
		name, data string
		format     Format
		wantErr    string
	}{
		{"missing version", "enabled = true\n", FormatTOML, "version: missing"},
		{"future version", "version = 2\n", FormatTOML, "version: 2 is not supported"},
		{"unknown toml key", "version = 1\nfirewall = true\n", FormatTOML, "unknown keys: firewall"},
		{"unknown yaml key", "version: 1\nfirewall: true\n", FormatYAML, "firewall"},
		{"garbage", "{{{ not toml", FormatTOML, "parse toml"},
		{"wrong type", "version = 1\nports = \"25\"\n", FormatTOML, "parse toml"},
		{"two yaml documents", "version: 1\n---\nversion: 1\n", FormatYAML, "more than one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeFile([]byte(tt.data), tt.format)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeFile(%q) = %v, want error containing %q", tt.data, err, tt.wantErr)
			}
		})
	}
	f, err := DecodeFile([]byte("version = 1\n"), FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Policy(testDir(t))
	if err != nil || !p.Equal(Default()) {
		t.Errorf("a file with only a version = %+v, %v; want the defaults", p, err)
	}
	f, _ = DecodeFile([]byte("version = 1\nports = [0, 25]\nallowed_users = [\"mallory\"]\nmode = \"drop\"\n"), FormatTOML)
	_, err = f.Policy(testDir(t))
	for _, want := range []string{"ports[0]: port 0", `allowed_users[0]: no such user "mallory"`, "mode: unknown mode"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("File.Policy() = %v, want it to contain %q", err, want)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"25,465,587", "0", "65535", "25,25", "a,b", " 1 , 2 ", ",", "-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			return
		}
		if len(ports) == 0 || !slices.IsSorted(ports) || ports[0] == 0 {
			t.Fatalf("ParsePorts(%q) = %v: want sorted, non-empty, no zero", s, ports)
		}
		for i := 1; i < len(ports); i++ {
			if ports[i] == ports[i-1] {
				t.Fatalf("ParsePorts(%q) = %v: duplicate", s, ports)
			}
		}
		again, err := ParsePorts(PortsString(ports))
		if err != nil || !slices.Equal(again, ports) {
			t.Fatalf("PortsString round trip of %v = %v, %v", ports, again, err)
		}
	})
}

func FuzzDecodeFile(f *testing.F) {
	f.Add([]byte("version = 1\nenabled = true\nports = [25, 465]\nallowed_users = [\"alice\"]\n"), false)
	f.Add([]byte("version: 1\nmode: log\nallowed_groups: [mailers]\n"), true)
	f.Add([]byte("\x00\xff{{"), false)
	f.Add([]byte("version = 1\nports = [70000]\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, yaml bool) {
		format := FormatTOML
		if yaml {
			format = FormatYAML
		}
		file, err := DecodeFile(data, format)
		if err != nil {
			return
		}
		d := testDir(t)
		p, err := file.Policy(d)
		if err != nil {
			return
		}
		out, err := ToFile(p).Encode(format)
		if err != nil {
			t.Fatalf("Encode of a valid policy: %v", err)
		}
		file2, err := DecodeFile(out, format)
		if err != nil {
			t.Fatalf("re-decode %q: %v", out, err)
		}
		p2, err := file2.Policy(d)
		if err != nil || !p2.Equal(p) {
			t.Fatalf("round trip changed the policy: %+v -> %+v (%v)", p, p2, err)
		}
	})
}
