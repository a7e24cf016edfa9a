package policy

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzDecodeFileBothFormats: DecodeFile never panics, what it accepts is
// well-formed, and a file that also passes File.Policy survives export and
// re-import in either syntax unchanged. The seeds run with plain go test.
func FuzzDecodeFileBothFormats(f *testing.F) {
	for _, p := range filePolicies() {
		for _, format := range allFormats {
			data, err := ToFile(p).Encode(format)
			if err != nil {
				f.Fatalf("ToFile(%+v).Encode(%s) = %v", p, format, err)
			}
			f.Add(data, format == FormatYAML)
		}
	}
	seeds := []struct {
		data string
		yaml bool
	}{
		{"version = 1\n", false},
		{"version: 1\n", true},
		{"version = 1\nenabled = false\n", false},
		{"version: 1\nenabled: true\n", true},
		{"version: 1\nenabled: true\nexceptions:\n  - user: alice\n    to: 192.0.2.0/24\n    ports: [587]\n", true},
		{"root:$y$j9T$salt$hash:19700:0:99999:7:::\n", true},
		{"version = 1\nenabled = true\nmode = \"LOG\"\nports = [587, 25]\nallowed_users = [\" alice \", \"4242\"]\nallowed_groups = [\"3000\"]\n", false},
		{"version: 1\nenabled: false\nbackend: nft\nports: [2525]\nallowed_users: [1001, bob]\nallowed_groups: [mailers]\n", true},
		{"version = 1\nports = [70000, 0, -1]\nallowed_users = [\"ghost\"]\n", false},
		{"version: 1\nmode: redirect\n", true},
		{"version = 2\n", false},
		{"version: 1\n---\nversion: 1\n", true},
		{"version: 1\n---\n[unclosed\n", true},
		{"version = 1\n[web]\nlisten = 1\n", false},
		{"version: 1\nports: &a [25]\nallowed_users: *a\n", true},
		{"version: 1\nports: [0x19, 0o721]\n", true},
		{"\x00\xff\xfe{{", false},
		{"{{{ not: yaml", true},
		{"", false},
		{"", true},
	}
	for _, s := range seeds {
		f.Add([]byte(s.data), s.yaml)
	}
	dir := testDirectory(f)
	f.Fuzz(func(t *testing.T, data []byte, yaml bool) {
		format := FormatTOML
		if yaml {
			format = FormatYAML
		}
		file, err := DecodeFile(data, format)
		if err != nil {
			return
		}
		if file.Version != FileVersion || file.Backend == "" {
			t.Fatalf("DecodeFile(%q, %s) = %+v, nil: want version %d and a backend", data, format, file, FileVersion)
		}
		p, err := file.Policy(dir)
		if err != nil {
			return
		}
		if err := Validate(p, dir); err != nil {
			t.Fatalf("Validate(DecodeFile(%q, %s).Policy()) = %v, want nil: File.Policy accepted an invalid policy", data, format, err)
		}
		for _, out := range allFormats {
			enc, err := ToFile(p).Encode(out)
			if err != nil {
				t.Fatalf("Encode(%s) of %+v = %v", out, p, err)
			}
			file2, err := DecodeFile(enc, out)
			if err != nil {
				t.Fatalf("DecodeFile(Encode(%s)) = %v\ninput %q\nexported:\n%s", out, err, data, enc)
			}
			p2, err := file2.Policy(dir)
			if err != nil {
				t.Fatalf("re-import through %s = %v\ninput %q\nexported:\n%s", out, err, data, enc)
			}
			if !p2.Equal(p) {
				t.Fatalf("re-import through %s changed the policy (-want +got):\n%s\ninput %q\nexported:\n%s", out, cmp.Diff(p, p2), data, enc)
			}
		}
	})
}

// FuzzParsePortsProperties: whatever ParsePorts accepts is exactly the set of
// numbers listed, sorted, unique and in 1-65535, and it prints back the same.
func FuzzParsePortsProperties(f *testing.F) {
	for _, s := range []string{
		"25,465,587", " 587, 25 ", "1", "65535", "0", "65536", "70000", "-1", "abc",
		"25,,465", "25,25", "25;465", "", ",", "025", "+25", "18446744073709551615", "1,\t2 ,3\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if ports != nil || err.Error() == "" {
				t.Fatalf("ParsePorts(%q) = %v, %q, want nil ports and a message", s, ports, err)
			}
			return
		}
		if len(ports) == 0 {
			t.Fatalf("ParsePorts(%q) = [], nil, want an error: an empty list restricts nothing", s)
		}
		var listed []uint16
		for field := range strings.SplitSeq(s, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(field), 10, 16)
			if err != nil {
				t.Fatalf("ParsePorts(%q) = %v, nil, but entry %q is not a port number", s, ports, field)
			}
			listed = append(listed, uint16(n))
		}
		slices.Sort(listed)
		if !slices.Equal(ports, listed) {
			t.Fatalf("ParsePorts(%q) = %v, want the listed ports %v", s, ports, listed)
		}
		for i, p := range ports {
			if p == 0 || (i > 0 && p <= ports[i-1]) {
				t.Fatalf("ParsePorts(%q) = %v, want sorted, unique ports in 1-65535", s, ports)
			}
		}
		again, err := ParsePorts(PortsString(ports))
		if err != nil || !slices.Equal(again, ports) {
			t.Fatalf("ParsePorts(PortsString(%v)) = %v, %v, want %v, nil", ports, again, err, ports)
		}
	})
}

// FuzzResolvePrincipal: whatever an administrator types after "allow user" or
// "allow group", the answer is a principal that resolves back to itself from
// its own Ref, or an error that says what was wrong; nothing in between.
func FuzzResolvePrincipal(f *testing.F) {
	dir := NewDirectory(
		[]Account{{Name: "alice", UID: 1001, GID: 1001}, {Name: "Debian-exim", UID: 101, GID: 101}, {Name: "host$", UID: 1500, GID: 1500}},
		[]Group{{Name: "mailers", GID: 2000, Members: []string{"alice"}}, {Name: "alice", GID: 1001}})
	for _, s := range []string{"alice", "1001", " alice ", "Debian-exim", "host$", "mailers", "2000", "0", "4294967294",
		"4294967295", "99999999999", "-1", "", "al ice", "bob", "ALICE", "1e3", "０", "alice\x00", "../etc/passwd"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, ref string, group bool) {
		kind := KindUser
		if group {
			kind = KindGroup
		}
		pr, err := dir.ResolvePrincipal(kind, ref)
		if err != nil {
			if err.Error() == "" || pr != (Principal{}) {
				t.Fatalf("ResolvePrincipal(%s, %q) = %+v, %q; want the zero principal and a message", kind, ref, pr, err)
			}
			return
		}
		if pr.Kind != kind || (!pr.ByID && pr.Name == "") || pr.ID == 4294967295 {
			t.Fatalf("ResolvePrincipal(%s, %q) = %+v", kind, ref, pr)
		}
		again, err := dir.ResolvePrincipal(kind, pr.Ref())
		if err != nil || !again.Same(pr) {
			t.Fatalf("ResolvePrincipal(%s, %q) = %+v, but its Ref %q resolves to %+v, %v", kind, ref, pr, pr.Ref(), again, err)
		}
	})
}

// FuzzParseDestination: whatever follows --to, a destination that parses is
// canonical (parsing its canonical form gives it back) and is either a
// non-empty prefix or a host name; anything else is an error with a message.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"smtp.sendgrid.net", "SMTP.SendGrid.NET.", "192.0.2.7", "192.0.2.7/24", "2001:db8::25",
		"2001:db8::/32", "::ffff:192.0.2.7", "::ffff:192.0.2.0/120", "0.0.0.0/0", "::/0", "fe80::1%eth0", "", "-bad-.example",
		"a..b", "under_score.example", "192.0.2.300", "1.2.3.4/33", strings.Repeat("a", 64) + ".example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDestination(s)
		if err != nil {
			if err.Error() == "" || d != (Destination{}) {
				t.Fatalf("ParseDestination(%q) = %+v, %q; want the zero destination and a message", s, d, err)
			}
			return
		}
		switch {
		case d.IsHost():
			if d.Prefix.IsValid() || d.Host != d.Canonical || d.Host != strings.ToLower(d.Host) {
				t.Fatalf("ParseDestination(%q) = %+v: a host name must be lower-case and canonical, without a prefix", s, d)
			}
		case !d.Prefix.IsValid() || d.Prefix.Bits() == 0 || d.Prefix != d.Prefix.Masked() || d.Prefix.Addr().Is4In6():
			t.Fatalf("ParseDestination(%q) = %+v: want a masked, non-empty, unmapped prefix", s, d)
		}
		again, err := ParseDestination(d.Canonical)
		if err != nil || again != d {
			t.Fatalf("ParseDestination(%q) = %+v, but its canonical form parses to %+v, %v", s, d, again, err)
		}
	})
}
