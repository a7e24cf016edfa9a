package cli

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified},
			}}, true
		}
	}
	tests := []struct {
		name            string
		version, commit string
		read            func() (*debug.BuildInfo, bool)
		want            versionInfo
	}{
		{"make build: ldflags win", "v1.2.3-4-gabc1234", "abc1234def", vcs("ffff", "true"),
			versionInfo{Version: "v1.2.3-4-gabc1234", Commit: "abc1234def", Go: "go1.26.8"}},
		{"go build in a checkout", "", "", vcs("abc1234def", "false"),
			versionInfo{Version: "devel", Commit: "abc1234def", Go: "go1.26.8"}},
		{"go build in a dirty checkout", "", "", vcs("abc1234def", "true"),
			versionInfo{Version: "devel", Commit: "abc1234def-dirty", Go: "go1.26.8"}},
		{"go install module@version", "", "", func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}}, true
		}, versionInfo{Version: "v1.2.3", Commit: "unknown", Go: "go1.26.8"}},
		{"no build info", "", "", func() (*debug.BuildInfo, bool) { return nil, false },
			versionInfo{Version: "devel", Commit: "unknown", Go: runtime.Version()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildVersion(tt.version, tt.commit, tt.read)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("buildVersion(%q, %q) (-want +got):\n%s", tt.version, tt.commit, diff)
			}
		})
	}
}

func TestVersionCommandAndFlag(t *testing.T) {
	h := newHarness(t)
	text := h.ok("version")
	if flag := h.ok("--version"); flag != text {
		t.Errorf("--version printed %q, version printed %q: want the same", flag, text)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(h.ok("version", "--json")), &got); err != nil {
		t.Fatalf("version --json is not a JSON object of strings: %v", err)
	}
	// A test binary has no link-time version: devel, and this Go.
	want := map[string]string{"version": "devel", "commit": got["commit"], "go": runtime.Version()}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("version --json (-want +got):\n%s", diff)
	}
	if got["commit"] == "" {
		t.Error(`version --json: "commit" is empty, want a hash or "unknown"`)
	}
	wantText := "smtpguard devel\ncommit:  " + got["commit"] + "\ngo:      " + runtime.Version() + "\n"
	if text != wantText {
		t.Errorf("version = %q, want %q", text, wantText)
	}
	if r := h.run("version", "extra"); r.code != ExitUsage {
		t.Errorf("version extra: exit %d, want %d (stderr %q)", r.code, ExitUsage, r.stderr)
	}
}
