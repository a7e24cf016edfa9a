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
		{"version = 1\nenabled = true\nmode = \"LOG\"\nports = [587, 25]\nallowed_users = [\" alice \", \"4242\"]\nallowed_groups = [\"3000\"]\n", false},
		{"version: 1\nbackend: nft\nports: [2525]\nallowed_users: [1001, bob]\nallowed_groups: [mailers]\n", true},
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
