package policy

import (
	"strings"
	"testing"
)

// A policy file must say whether enforcement is on: a file without enabled
// (version = 1 alone, or a download cut short) used to import as disabled
// (issue 12, hole 9).
func TestDecodeFileRequiresEnabled(t *testing.T) {
	on := Default()
	on.Enabled = true
	on.Users = []Principal{prUID1001}
	exported := map[Format]string{}
	for _, format := range allFormats {
		data, err := ToFile(on).Encode(format)
		if err != nil {
			t.Fatal(err)
		}
		exported[format] = string(data)
	}
	// The export names enabled on the line after version: cut there.
	cut := func(format Format) string {
		s := exported[format]
		i := strings.Index(s, "enabled")
		if i < 0 {
			t.Fatalf("export in %s does not write enabled:\n%s", format, s)
		}
		return s[:i]
	}
	for _, tt := range []struct {
		name   string
		format Format
		data   string
	}{
		{"toml version alone", FormatTOML, "version = 1\n"},
		{"yaml version alone", FormatYAML, "version: 1\n"},
		{"toml without enabled", FormatTOML, "version = 1\nmode = \"log\"\nallowed_users = [\"alice\"]\n"},
		{"yaml without enabled", FormatYAML, "version: 1\nmode: log\n"},
		{"toml export cut short", FormatTOML, cut(FormatTOML)},
		{"yaml export cut short", FormatYAML, cut(FormatYAML)},
		{"yaml enabled without a value", FormatYAML, "version: 1\nenabled:\n"},
		{"yaml enabled null", FormatYAML, "version: 1\nenabled: null\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeFile([]byte(tt.data), tt.format)
			if err == nil || !strings.Contains(err.Error(), "enabled") {
				t.Errorf("DecodeFile(%q, %s) = %+v, %v; want an error about enabled", tt.data, tt.format, f, err)
			}
		})
	}
	for _, enabled := range []bool{false, true} {
		p := Default()
		p.Enabled = enabled
		for _, format := range allFormats {
			data, err := ToFile(p).Encode(format)
			if err != nil {
				t.Fatal(err)
			}
			f, err := DecodeFile(data, format)
			if err != nil || f.Enabled != enabled {
				t.Errorf("export with enabled %v in %s re-imports as %+v, %v:\n%s", enabled, format, f, err, data)
			}
		}
	}
}

// Parse errors name the line and, for an unknown key, the key, but never
// repeat the file's contents: import pointed at /etc/shadow printed a
// password hash (issue 12, hole 9).
func TestDecodeFileErrorsNeverShowContents(t *testing.T) {
	const secret = "SECRET"
	shadow := "root:$y$j9T$SECRETsalt$SECREThashSECREThashSECREThash:19700:0:99999:7:::\n" +
		"daemon:*:19700:0:99999:7:::\n"
	for _, tt := range []struct {
		name   string
		format Format
		data   string
		want   []string // each must be in the error
	}{
		{"shadow as toml", FormatTOML, shadow, []string{"line 1"}},
		{"shadow as yaml", FormatYAML, shadow, []string{"line 1: unknown key (not shown", "line 2: unknown key (not shown"}},
		{"shadow with spaces as yaml", FormatYAML, "root: $6$SECRETsalt$SECREThash\n", []string{"line 1", `unknown key "root"`}},
		{"toml syntax", FormatTOML, "version = 1\nenabled = true\nSECRET-abc def\n", []string{"line 3"}},
		{"toml unterminated string", FormatTOML, "version = 1\nenabled = true\nmode = \"SECRET\n", []string{"line 3"}},
		{"toml unknown key keeps its value", FormatTOML, "version = 1\nenabled = true\npassword = \"hunter2-SECRET\"\n", []string{`unknown keys: "password"`}},
		{"toml wrong type", FormatTOML, "version = 1\nenabled = true\nmode = [\"SECRET-abc\"]\n", []string{"line 3", "mode: want"}},
		{"toml string in ports", FormatTOML, "version = 1\nenabled = true\nports = [25, \"SECRET\"]\n", []string{"line 3", "ports: want"}},
		{"toml huge number", FormatTOML, "version = 1\nenabled = true\nports = [25, 99999999999999999999999]\n", []string{"line 3"}},
		{"toml enabled as string", FormatTOML, "version = 1\nenabled = \"SECRET\"\n", []string{"line 2", "enabled: want true or false"}},
		{"toml duplicate key", FormatTOML, "version = 1\nenabled = true\nmode = \"log\"\nmode = \"SECRET\"\n", []string{"line 4"}},
		{"yaml wrong type", FormatYAML, "version: 1\nenabled: true\nmode: [SECRET-abc]\n", []string{"line 3", "mode: want"}},
		{"yaml enabled as word", FormatYAML, "version: 1\nenabled: SECRET-abc\n", []string{"line 2", "enabled: want true or false"}},
		{"yaml word in ports", FormatYAML, "version: 1\nenabled: true\nports: [25, SECRET-abc]\n", []string{"line 3", "ports: want"}},
		{"yaml unclosed list", FormatYAML, "version: 1\nenabled: true\nallowed_users: [\"SECRET-abc\"\n", []string{"not valid YAML"}},
		{"yaml unknown anchor", FormatYAML, "version: 1\nenabled: *SECRET\n", []string{"not valid YAML"}},
		{"yaml duplicate key", FormatYAML, "version: 1\nenabled: true\nmode: log\nmode: SECRET\n", []string{"line 4", "mode: given twice"}},
		{"yaml unknown key in an exception", FormatYAML, "version: 1\nenabled: true\nexceptions:\n  - user: alice\n    to: 192.0.2.1\n    colour: SECRET\n",
			[]string{"line 6", `unknown key "exceptions[0].colour"`}},
		{"yaml exception of the wrong type", FormatYAML, "version: 1\nenabled: true\nexceptions:\n  - user: alice\n    to: [SECRET]\n", []string{"line 5", "exceptions[0].to: want"}},
		{"toml unknown key in an exception", FormatTOML, "version = 1\nenabled = true\n[[exceptions]]\nuser = \"alice\"\nto = \"192.0.2.1\"\ncolour = \"SECRET\"\n",
			[]string{`unknown keys: "exceptions.colour"`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeFile([]byte(tt.data), tt.format)
			if err == nil {
				t.Fatalf("DecodeFile(%q, %s) = %+v, nil; want an error", tt.data, tt.format, f)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "$y$") || strings.Contains(err.Error(), "$6$") {
				t.Errorf("DecodeFile(%q, %s) error shows the file's contents: %v", tt.data, tt.format, err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("DecodeFile(%q, %s) = %v, want it to contain %q", tt.data, tt.format, err, want)
				}
			}
		})
	}
}
