package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// import pointed at the wrong file names the file and the line and exits 2,
// but never prints what the file holds (issue 12, hole 9: import --format
// yaml /etc/shadow printed a password hash).
func TestImportOfAForeignFileShowsNoContents(t *testing.T) {
	h := newHarness(t)
	shadow := filepath.Join(h.dir, "shadow")
	if err := os.WriteFile(shadow, []byte("root:$y$j9T$c2VjcmV0$SECRETHASHSECRETHASHSECRETHASH:19700:0:99999:7:::\n"+
		"alice:$6$salt$SECRETHASH2:19700:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"yaml", "toml"} {
		t.Run(format, func(t *testing.T) {
			before := h.ok("export")
			r := h.run("import", "--format", format, shadow)
			if r.code != ExitUsage {
				t.Errorf("import --format %s %s: exit %d, want %d", format, shadow, r.code, ExitUsage)
			}
			if strings.Contains(r.stderr, "SECRET") || strings.Contains(r.stderr, "$y$") || strings.Contains(r.stderr, "$6$") {
				t.Errorf("import --format %s of a shadow file printed its contents: %q", format, r.stderr)
			}
			if !strings.Contains(r.stderr, shadow) || !strings.Contains(r.stderr, "line 1") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("import --format %s: stderr %q, want one line naming %s and line 1", format, r.stderr, shadow)
			}
			if after := h.ok("export"); after != before {
				t.Error("a rejected import changed the policy")
			}
		})
	}
}

// A policy file that does not say enabled is refused, whatever else it says.
func TestImportRequiresEnabled(t *testing.T) {
	h := newHarness(t)
	h.ok("enable")
	for _, content := range []string{"version = 1\n", "version = 1\nallowed_users = [\"alice\"]\n"} {
		r := h.runIn(content, "import", "-")
		if r.code != ExitUsage || !strings.Contains(r.stderr, "enabled: missing") {
			t.Errorf("import of %q: exit %d, stderr %q; want exit 2 and enabled: missing", content, r.code, r.stderr)
		}
		if !h.status().Enabled {
			t.Fatalf("import of %q disabled enforcement", content)
		}
	}
}
