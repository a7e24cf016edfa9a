//go:build linux

package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/testutil"
)

// nobody is an uid no test process runs as.
const nobody = 65534

// Owned by someone else, a state directory or file lets that user swap in a
// database that allows themselves, which root would then enforce.
func TestPrivilegedCheckRefusesForeignOwners(t *testing.T) {
	testutil.Privileged(t)
	for _, tt := range []struct {
		name  string
		chown func(dir string) string // returns the path given away
	}{
		{"directory", func(dir string) string { return dir }},
		{"parent", func(dir string) string { return filepath.Dir(dir) }},
		{"database", func(dir string) string {
			p := filepath.Join(dir, "smtpguard.db")
			write(t, p, 0o600)
			return p
		}},
		{"lock symlink", func(dir string) string {
			p := filepath.Join(dir, "other")
			os.Symlink("/etc/shadow", p)
			return p
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := newDir(t)
			p := tt.chown(dir)
			if err := os.Lchown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			_, err := Check(dir)
			if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") || !strings.Contains(err.Error(), p) {
				t.Errorf("Check() = %v, want an error naming %s and its owner", err, p)
			}
		})
	}
}
