package mta

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/**/*.golden from the current output")

// golden compares got with testdata/<name>.golden, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lineDiff lists the lines only a has and only b has, by longest common
// subsequence of whole lines (line endings included).
func lineDiff(a, b []byte) (removed, added []string) {
	x, y := splitLines(a), splitLines(b)
	// lcs[i][j] = LCS length of x[i:] and y[j:]
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(x) && j < len(y) {
		switch {
		case x[i] == y[j]:
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			removed = append(removed, x[i])
			i++
		default:
			added = append(added, y[j])
			j++
		}
	}
	removed = append(removed, x[i:]...)
	added = append(added, y[j:]...)
	return removed, added
}

// managedLine reports whether line sets one of smtpguard's Exim options
// (or continues such a setting: the test fixtures' continuation lines of
// managed options start with white space and never with a letter).
func managedEximLine(line string) bool {
	m := eximOptionRE.FindStringSubmatch(strings.TrimSpace(line))
	if m == nil {
		return strings.HasPrefix(line, " ") && !isBlankOrComment(line)
	}
	for _, o := range eximLimitOptions {
		if m[2] == o {
			return true
		}
	}
	return false
}

func TestSetEximMain(t *testing.T) {
	all := eximSettings(Limits{MaxConnections: 2, MaxPerHost: 1, Reserve: 1}, false)
	tests := []struct {
		name     string
		file     string
		settings []eximSetting
		golden   string
	}{
		{name: "debian template: insert all three", file: "exim/debian-exim4.conf.template", settings: all, golden: "exim/debian-exim4.conf.template.max2"},
		{name: "cpanel: replace max, insert the others", file: "exim/cpanel-exim.conf", settings: all, golden: "exim/cpanel-exim.conf.max2"},
		{
			name: "rhel: keep the per-host expansion, replace hidden reserve and both branches",
			file: "exim/rhel-exim.conf", settings: eximSettings(Limits{MaxConnections: 40, Reserve: 4}, true),
			golden: "exim/rhel-exim.conf.max40-keep",
		},
		{
			name: "rhel: replace a continued per-host expansion",
			file: "exim/rhel-exim.conf", settings: eximSettings(Limits{MaxConnections: 40, MaxPerHost: 5}, false),
			golden: "exim/rhel-exim.conf.max40-perhost5",
		},
		{name: "no begin line and no final newline", file: "exim/nobegin-noeol.conf", settings: all, golden: "exim/nobegin-noeol.conf.max2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := readTestdata(t, tt.file)
			got, err := setEximMain(src, tt.settings)
			if err != nil {
				t.Fatalf("setEximMain(%s) error: %v", tt.file, err)
			}
			golden(t, tt.golden, got)

			again, err := setEximMain(got, tt.settings)
			if err != nil {
				t.Fatalf("second setEximMain error: %v", err)
			}
			if diff := cmp.Diff(string(got), string(again)); diff != "" {
				t.Errorf("setEximMain is not idempotent (-once +twice):\n%s", diff)
			}

			// Byte-identical elsewhere: only managed settings disappear, and
			// only managed settings, smtpguard's comment and blank lines
			// appear.
			removed, added := lineDiff(src, got)
			for _, l := range removed {
				if !managedEximLine(l) {
					t.Errorf("removed a line smtpguard does not manage: %q", l)
				}
			}
			for _, l := range added {
				if !managedEximLine(l) && strings.TrimSpace(l) != "" && !strings.Contains(eximBlockComment, strings.TrimSpace(l)) {
					t.Errorf("added an unexpected line: %q", l)
				}
			}
			if !strings.HasSuffix(tt.file, "noeol.conf") && !strings.HasSuffix(string(got), "\n") {
				t.Errorf("output lost the final newline")
			}
		})
	}
}

func TestSetEximMainInsertsBeforeFirstBegin(t *testing.T) {
	src := readTestdata(t, "exim/cpanel-exim.conf")
	got, err := setEximMain(src, eximSettings(Limits{MaxConnections: 2, MaxPerHost: 1, Reserve: 1}, false))
	if err != nil {
		t.Fatal(err)
	}
	main, _, ok := strings.Cut(string(got), "\nbegin acl\n")
	if !ok {
		t.Fatal("no begin acl line in output")
	}
	for _, want := range []string{"\nsmtp_accept_max = 2\n", "\nsmtp_accept_max_per_host = 1\n", "\nsmtp_accept_reserve = 1\n"} {
		if strings.Count(string(got), want) != 1 || !strings.Contains(main, want) {
			t.Errorf("want exactly one %q, in the main section", strings.TrimSpace(want))
		}
	}
	// ACL text that merely looks like an option is not touched.
	if !strings.Contains(string(got), "deny    message = smtp_accept_max = 1 here is ACL text") {
		t.Error("changed text after the first begin line")
	}
}

func TestSetEximMainUnbalancedConditional(t *testing.T) {
	src := readTestdata(t, "exim/unbalanced.conf")
	if got, err := setEximMain(src, eximSettings(Limits{MaxConnections: 2}, false)); err == nil {
		t.Errorf("setEximMain(unbalanced) = %q, want an error", got)
	}
}

func TestParseEximBP(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    eximValues
		wantErr bool
	}{
		{
			name: "debian defaults",
			out:  "smtp_accept_max = 20\nsmtp_accept_max_per_host = \nsmtp_accept_reserve = 0\n",
			want: eximValues{Limits: Limits{MaxConnections: 20}},
		},
		{
			name: "all numeric",
			out:  "smtp_accept_max = 2\nsmtp_accept_max_per_host = 1\nsmtp_accept_reserve = 1\n",
			want: eximValues{Limits: Limits{MaxConnections: 2, MaxPerHost: 1, Reserve: 1}, PerHostRaw: "1"},
		},
		{
			name: "K suffix and an expansion",
			out:  "smtp_accept_max = 2K\nsmtp_accept_max_per_host = ${if eq{1}{1}{4}{5}}\nsmtp_accept_reserve = 5\n",
			want: eximValues{Limits: Limits{MaxConnections: 2048, Reserve: 5}, PerHostRaw: "${if eq{1}{1}{4}{5}}"},
		},
		{name: "missing option", out: "smtp_accept_max = 20\nsmtp_accept_reserve = 0\n", wantErr: true},
		{name: "garbage", out: "smtp_accept_max = lots\nsmtp_accept_max_per_host = \nsmtp_accept_reserve = 0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseEximBP([]byte(tt.out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseEximBP() error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && got != tt.want {
				t.Errorf("parseEximBP() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEximPerHostExpanded(t *testing.T) {
	for raw, want := range map[string]bool{"": false, "0": false, "10": false, "${if eq{1}{1}{4}{5}}": true, "$acl_m0": true} {
		if got := (eximValues{PerHostRaw: raw}).perHostExpanded(); got != want {
			t.Errorf("perHostExpanded(%q) = %v, want %v", raw, got, want)
		}
	}
}

func TestEximVersion(t *testing.T) {
	tests := map[string]string{
		"Exim version 4.96 #2 built 11-May-2026 17:12:18\nCopyright (c) University of Cambridge\n": "4.96",
		"Exim version 4.98.1 #1 built 01-Jan-2025 00:00:00\n":                                      "4.98.1",
		"":                          "",
		"exim: permission denied\n": "",
	}
	for out, want := range tests {
		if got := eximVersion([]byte(out)); got != want {
			t.Errorf("eximVersion(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestDebianSplitConfig(t *testing.T) {
	tests := []struct {
		conf string
		want bool
	}{
		{"dc_use_split_config='false'\n", false},
		{"dc_use_split_config='true'\n", true},
		{"dc_use_split_config=\"true\"\n", true},
		{"# dc_use_split_config='true'\ndc_use_split_config='false'\n", false},
		{"dc_use_split_config='false'\ndc_use_split_config='true'\n", true},
		{"", false},
	}
	for _, tt := range tests {
		if got := debianSplitConfig([]byte(tt.conf)); got != tt.want {
			t.Errorf("debianSplitConfig(%q) = %v, want %v", tt.conf, got, tt.want)
		}
	}
}

func TestEximLimitsFile(t *testing.T) {
	got := string(eximLimitsFile(eximSettings(Limits{MaxConnections: 7, MaxPerHost: 3, Reserve: 1}, false)))
	for _, want := range []string{"smtp_accept_max = 7\n", "smtp_accept_max_per_host = 3\n", "smtp_accept_reserve = 1\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("eximLimitsFile() = %q, want it to contain %q", got, want)
		}
	}
	keep := string(eximLimitsFile(eximSettings(Limits{MaxConnections: 7}, true)))
	if strings.Contains(keep, eximPerHost) {
		t.Errorf("eximLimitsFile(keep per host) = %q, want no %s", keep, eximPerHost)
	}
}
