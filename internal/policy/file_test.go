package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var allFormats = []Format{FormatTOML, FormatYAML}

// filePolicies are valid policies against testDirectory, covering every field.
func filePolicies() map[string]Policy {
	full := Policy{
		Enabled:    true,
		Backend:    "nft",
		Mode:       ModeLog,
		Ports:      []uint16{1, 25, 2525, 65535},
		AllowLocal: false,
		Users:      []Principal{prDave, prUID4242, prAlice, prUID1002, {Kind: KindUser, Name: "Debian-exim", ID: 101}, {Kind: KindUser, Name: "smb1$", ID: 1100}},
		Groups:     []Principal{prGID3000, prMailers, prGID4000},
	}
	return map[string]Policy{
		"default": Default(),
		"full":    full,
		"bpf on a cgroup": {
			Enabled: true, Backend: "bpf", Cgroup: "/sys/fs/cgroup/system.slice", Mode: ModeReject, Ports: []uint16{25}, AllowLocal: true,
		},
		"explain mode": {
			Enabled: true, Backend: "nft", Mode: ModeExplain, Ports: []uint16{25, 465, 587, 2525}, AllowLocal: true,
		},
		"root by uid": {
			Backend: BackendAuto, Mode: ModeReject, Ports: []uint16{587}, AllowLocal: true,
			Users: []Principal{{Kind: KindUser, Name: "root", ID: 0, ByID: true}},
		},
	}
}

func TestPolicyFileRoundTripBothFormats(t *testing.T) {
	dir := testDirectory(t)
	for name, p := range filePolicies() {
		for _, format := range allFormats {
			t.Run(name+"/"+string(format), func(t *testing.T) {
				f := ToFile(p)
				data, err := f.Encode(format)
				if err != nil {
					t.Fatalf("ToFile(%+v).Encode(%s) = %v", p, format, err)
				}
				if !strings.HasPrefix(string(data), "# smtpguard policy; apply with: smtpguard import FILE\n") {
					t.Errorf("Encode(%s) does not start with the explanatory comment:\n%s", format, data)
				}
				decoded, err := DecodeFile(data, format)
				if err != nil {
					t.Fatalf("DecodeFile(Encode(%s)) = %v\n%s", format, err, data)
				}
				if diff := cmp.Diff(f, decoded, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("DecodeFile(Encode(%s)) file mismatch (-want +got):\n%s\n%s", format, diff, data)
				}
				got, err := decoded.Policy(dir)
				if err != nil {
					t.Fatalf("DecodeFile(Encode(%s)).Policy() = %v\n%s", format, err, data)
				}
				if !got.Equal(p) {
					t.Errorf("round trip through %s changed the policy (-want +got):\n%s\n%s", format, cmp.Diff(p, got), data)
				}
			})
		}
	}
}

func TestToFile(t *testing.T) {
	p := filePolicies()["full"]
	want := File{
		Version:       1,
		Enabled:       true,
		Backend:       "nft",
		Mode:          "log",
		Ports:         []int{1, 25, 2525, 65535},
		AllowLocal:    false,
		AllowedUsers:  []string{"dave", "4242", "alice", "1002", "Debian-exim", "smb1$"},
		AllowedGroups: []string{"3000", "mailers", "4000"},
	}
	if diff := cmp.Diff(want, ToFile(p)); diff != "" {
		t.Errorf("ToFile() mismatch (-want +got):\n%s", diff)
	}
	// Empty lists are written out as [], so the exported file shows the key.
	for _, format := range allFormats {
		data, err := ToFile(Default()).Encode(format)
		if err != nil {
			t.Fatalf("ToFile(Default()).Encode(%s) = %v", format, err)
		}
		for _, key := range []string{"version", "enabled", "backend", "mode", "ports", "allow_local", "allowed_users", "allowed_groups"} {
			if !strings.Contains(string(data), key) {
				t.Errorf("ToFile(Default()).Encode(%s) lacks key %q:\n%s", format, key, data)
			}
		}
	}
}

func TestDecodeFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		format  Format
		data    string
		wantErr []string
	}{
		{name: "toml missing version", format: FormatTOML, data: "enabled = true\nmode = \"log\"\n", wantErr: []string{"version: missing", "version = 1"}},
		{name: "yaml missing version", format: FormatYAML, data: "enabled: true\nmode: log\n", wantErr: []string{"version: missing"}},
		{name: "toml version 0", format: FormatTOML, data: "version = 0\n", wantErr: []string{"version: missing"}},
		{name: "toml version 2", format: FormatTOML, data: "version = 2\n", wantErr: []string{"version: 2 is not supported", "reads version 1"}},
		{name: "yaml version 2", format: FormatYAML, data: "version: 2\n", wantErr: []string{"version: 2 is not supported"}},
		{name: "toml negative version", format: FormatTOML, data: "version = -1\n", wantErr: []string{"version: -1 is not supported"}},
		{name: "toml version as string", format: FormatTOML, data: "version = \"1\"\n", wantErr: []string{"parse toml"}},
		{name: "yaml version as word", format: FormatYAML, data: "version: one\n", wantErr: []string{"parse yaml"}},
		{name: "toml unknown key", format: FormatTOML, data: "version = 1\nallowed_user = [\"alice\"]\n", wantErr: []string{`parse toml: unknown keys: "allowed_user"`}},
		{name: "toml several unknown keys", format: FormatTOML, data: "version = 1\ncolour = 1\nsize = 2\n", wantErr: []string{"colour", "size"}},
		{name: "toml unknown table", format: FormatTOML, data: "version = 1\n[web]\nlisten = \"127.0.0.1:8025\"\n", wantErr: []string{"unknown keys", "web"}},
		{name: "yaml unknown key", format: FormatYAML, data: "version: 1\nallowed_user: [alice]\n", wantErr: []string{"parse yaml", "allowed_user"}},
		{name: "toml garbage", format: FormatTOML, data: "this is not a policy file\n", wantErr: []string{"parse toml"}},
		{name: "toml binary garbage", format: FormatTOML, data: "\x00\xff\xfe{{", wantErr: []string{"parse toml"}},
		{name: "yaml garbage", format: FormatYAML, data: "{{{ not: yaml", wantErr: []string{"parse yaml"}},
		{name: "yaml scalar document", format: FormatYAML, data: "just some words\n", wantErr: []string{"parse yaml"}},
		{name: "toml read as yaml", format: FormatYAML, data: "version = 1\n", wantErr: []string{"parse yaml"}},
		{name: "empty yaml", format: FormatYAML, data: "", wantErr: []string{"parse yaml"}},
		{name: "empty toml", format: FormatTOML, data: "", wantErr: []string{"version: missing"}},
		{name: "two yaml documents", format: FormatYAML, data: "version: 1\n---\nversion: 1\nenabled: true\n", wantErr: []string{"more than one document"}},
		{name: "second yaml document with unknown keys", format: FormatYAML, data: "version: 1\n---\nsomething: else\n", wantErr: []string{"more than one document"}},
		{name: "toml duplicate key", format: FormatTOML, data: "version = 1\nenabled = true\nenabled = false\n", wantErr: []string{"parse toml"}},
		{name: "yaml duplicate key", format: FormatYAML, data: "version: 1\nenabled: true\nenabled: false\n", wantErr: []string{"parse yaml"}},
		{name: "toml ports as string", format: FormatTOML, data: "version = 1\nports = \"25,465\"\n", wantErr: []string{"parse toml"}},
		{name: "yaml ports as words", format: FormatYAML, data: "version: 1\nports: [smtp, submission]\n", wantErr: []string{"parse yaml"}},
		{name: "toml enabled as string", format: FormatTOML, data: "version = 1\nenabled = \"yes\"\n", wantErr: []string{"parse toml"}},
		{name: "yaml allow_local as word", format: FormatYAML, data: "version: 1\nallow_local: maybe\n", wantErr: []string{"parse yaml"}},
		{name: "toml users as string", format: FormatTOML, data: "version = 1\nallowed_users = \"alice\"\n", wantErr: []string{"parse toml"}},
		{name: "yaml users as map", format: FormatYAML, data: "version: 1\nallowed_users: {alice: true}\n", wantErr: []string{"parse yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeFile([]byte(tt.data), tt.format)
			if err == nil {
				t.Fatalf("DecodeFile(%q, %s) = %+v, nil, want error", tt.data, tt.format, got)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("DecodeFile(%q, %s) error = %q, want it to contain %q", tt.data, tt.format, err, want)
				}
			}
			if diff := cmp.Diff(File{}, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DecodeFile(%q, %s) returned a partly filled File with its error (-want +got):\n%s", tt.data, tt.format, diff)
			}
		})
	}
}

func TestDecodeFileRejectsMalformedTrailingYAML(t *testing.T) {
	for _, data := range []string{"version: 1\n---\n[unclosed\n", "version: 1\n...\n}}}\n"} {
		if f, err := DecodeFile([]byte(data), FormatYAML); err == nil {
			t.Errorf("DecodeFile(%q, yaml) = %+v, nil, want an error for the trailing data", data, f)
		}
	}
}

func TestDecodeFileDefaults(t *testing.T) {
	dir := testDirectory(t)
	// A file without ports keeps meaning 25, 465, 587 (what it meant when
	// it was written), not the fresh install's list with 2525.
	v1 := Default()
	v1.Ports = []uint16{25, 465, 587}
	tests := []struct {
		name   string
		format Format
		data   string
		want   Policy
	}{
		{name: "toml only version and enabled", format: FormatTOML, data: "version = 1\nenabled = false\n", want: v1},
		{name: "yaml only version and enabled", format: FormatYAML, data: "version: 1\nenabled: false\n", want: v1},
		{name: "toml comments only", format: FormatTOML, data: "# exported\nversion = 1 # required\nenabled = false\n", want: v1},
		{name: "yaml explicit end of document", format: FormatYAML, data: "version: 1\nenabled: false\n...\n", want: v1},
		{name: "toml empty backend means auto", format: FormatTOML, data: "version = 1\nenabled = false\nbackend = \"\"\n", want: v1},
		{name: "yaml null backend means auto", format: FormatYAML, data: "version: 1\nenabled: false\nbackend:\n", want: v1},
		{name: "yaml null lists", format: FormatYAML, data: "version: 1\nenabled: false\nallowed_users:\nallowed_groups:\n", want: v1},
		{
			name: "toml one setting keeps the other defaults", format: FormatTOML,
			data: "version = 1\nenabled = false\nallow_local = false\n",
			want: Policy{Backend: "auto", Mode: ModeReject, Ports: []uint16{25, 465, 587}},
		},
		{
			name: "yaml one setting keeps the other defaults", format: FormatYAML,
			data: "version: 1\nenabled: false\nmode: log\n",
			want: Policy{Backend: "auto", Mode: ModeLog, Ports: []uint16{25, 465, 587}, AllowLocal: true},
		},
		{
			name: "toml ports replace the defaults", format: FormatTOML,
			data: "version = 1\nenabled = false\nports = [2525]\n",
			want: Policy{Backend: "auto", Mode: ModeReject, Ports: []uint16{2525}, AllowLocal: true},
		},
		{
			name: "yaml ports replace the defaults", format: FormatYAML,
			data: "version: 1\nenabled: false\nports:\n  - 2525\n",
			want: Policy{Backend: "auto", Mode: ModeReject, Ports: []uint16{2525}, AllowLocal: true},
		},
		{
			name: "toml unsorted ports are sorted", format: FormatTOML,
			data: "version = 1\nenabled = false\nports = [587, 25]\n",
			want: Policy{Backend: "auto", Mode: ModeReject, Ports: []uint16{25, 587}, AllowLocal: true},
		},
		{
			name: "toml mode is case-insensitive", format: FormatTOML,
			data: "version = 1\nenabled = false\nmode = \"LOG\"\n",
			want: Policy{Backend: "auto", Mode: ModeLog, Ports: []uint16{25, 465, 587}, AllowLocal: true},
		},
		{
			name: "yaml numeric user and group refs", format: FormatYAML,
			data: "version: 1\nenabled: false\nallowed_users: [1001, \"4242\"]\nallowed_groups: [mailers, 4000]\n",
			want: Policy{
				Backend: "auto", Mode: ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true,
				Users:  []Principal{prUID1001, prUID4242},
				Groups: []Principal{prMailers, prGID4000},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeFile([]byte(tt.data), tt.format)
			if err != nil {
				t.Fatalf("DecodeFile(%q, %s) = %v, want nil", tt.data, tt.format, err)
			}
			got, err := f.Policy(dir)
			if err != nil {
				t.Fatalf("DecodeFile(%q, %s).Policy() = %v, want nil", tt.data, tt.format, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DecodeFile(%q, %s).Policy() mismatch (-want +got):\n%s", tt.data, tt.format, diff)
			}
		})
	}
}

func TestFilePolicyReportsEveryProblem(t *testing.T) {
	dir := testDirectory(t)
	valid := func() File {
		return File{Version: 1, Backend: "auto", Mode: "reject", Ports: []int{25, 465, 587}, AllowLocal: true}
	}
	tests := []struct {
		name   string
		change func(*File)
		want   []string // one entry per problem
	}{
		{
			name: "bad port and unknown user",
			change: func(f *File) {
				f.Ports = []int{25, 70000}
				f.AllowedUsers = []string{"alice", "mallory"}
			},
			want: []string{"ports[1]: port 70000 is outside 1-65535", `allowed_users[1]: no such user "mallory"`},
		},
		{
			name: "every kind of problem",
			change: func(f *File) {
				f.Mode = "drop"
				f.Ports = []int{0, 25, -5}
				f.AllowedUsers = []string{"ghost", "alice", "1001", "bad name"}
				f.AllowedGroups = []string{"nogroup", "mailers", "2000", "4294967295"}
			},
			want: []string{
				`mode: unknown mode "drop"`,
				"ports[0]: port 0 is outside",
				"ports[2]: port -5 is outside",
				`allowed_users[0]: no such user "ghost"`,
				"allowed_users[2]: user 1001: already allowed",
				`allowed_users[3]: invalid user name "bad name"`,
				`allowed_groups[0]: no such group "nogroup"`,
				"allowed_groups[2]: group 2000: already allowed",
				"allowed_groups[3]: group id 4294967295 is outside",
			},
		},
		{
			name:   "unknown mode",
			change: func(f *File) { f.Mode = "drop" },
			want:   []string{`mode: unknown mode "drop"`},
		},
		{
			name:   "duplicate ports",
			change: func(f *File) { f.Ports = []int{587, 25, 587} },
			want:   []string{"ports: port 587 is listed twice"},
		},
		{
			name:   "no ports",
			change: func(f *File) { f.Ports = []int{} },
			want:   []string{"ports: no ports given"},
		},
		{
			name:   "invalid backend",
			change: func(f *File) { f.Backend = "NFT" },
			want:   []string{`backend: invalid backend name "NFT"`},
		},
		{
			name:   "empty user entry",
			change: func(f *File) { f.AllowedUsers = []string{""} },
			want:   []string{"allowed_users[0]: empty user name"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := valid()
			tt.change(&f)
			got, err := f.Policy(dir)
			if err == nil {
				t.Fatalf("%+v.Policy() = %+v, nil, want errors %q", f, got, tt.want)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("File.Policy() = %q, want it to contain %q", err, want)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("File.Policy() reported %d problems, want %d:\n%v", n, len(tt.want), err)
			}
			if diff := cmp.Diff(Policy{}, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("File.Policy() returned a partial policy with its error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilePolicyReportsBackendWithOtherProblems(t *testing.T) {
	f := File{Version: 1, Backend: "NFT!", Mode: "reject", Ports: []int{70000}}
	_, err := f.Policy(testDirectory(t))
	for _, want := range []string{"ports[0]: port 70000", "backend: "} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("File.Policy() = %v, want it to contain %q", err, want)
		}
	}
}

func TestFormatForPath(t *testing.T) {
	tests := []struct {
		path string
		want Format
	}{
		{path: "policy.toml", want: FormatTOML},
		{path: "policy.yaml", want: FormatYAML},
		{path: "policy.yml", want: FormatYAML},
		{path: "/etc/smtpguard/POLICY.YAML", want: FormatYAML},
		{path: "Policy.Yml", want: FormatYAML},
		{path: "policy", want: FormatTOML},
		{path: "-", want: FormatTOML},
		{path: "policy.yaml.bak", want: FormatTOML},
		{path: "yaml", want: FormatTOML},
		{path: "/srv/yaml/policy.conf", want: FormatTOML},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := FormatForPath(tt.path); got != tt.want {
				t.Errorf("FormatForPath(%q) = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{in: "toml", want: FormatTOML},
		{in: "TOML", want: FormatTOML},
		{in: "yaml", want: FormatYAML},
		{in: "yml", want: FormatYAML},
		{in: "YAML", want: FormatYAML},
		{in: "json", wantErr: true},
		{in: "", wantErr: true},
		{in: ".yaml", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFormat(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseFormat(%q) = %q, nil, want error", tt.in, got)
				}
				if want := "unknown format " + `"` + tt.in + `"`; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "use toml or yaml") {
					t.Errorf("ParseFormat(%q) error = %q, want %q and advice to use toml or yaml", tt.in, err, want)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseFormat(%q) = %q, %v, want %q, nil", tt.in, got, err, tt.want)
			}
		})
	}
}
