package migrate

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// An import that names no ports keeps what the other tool closed by default
// (25, 465, 587), not smtpguard's newer default with 2525: the same
// configuration imports to the same policy before and after the upgrade.
func TestImportWithoutPortsKeepsTheToolsDefault(t *testing.T) {
	dir := t.TempDir()
	cpanelRoot := t.TempDir()
	write(t, cpanelRoot, "var/cpanel/smtpgidonlytweak", "")
	tests := []struct {
		name string
		run  func() (Result, error)
	}{
		{"csf without SMTP_PORTS", func() (Result, error) {
			path := filepath.Join(dir, "csf.conf")
			write(t, dir, "csf.conf", "SMTP_BLOCK = \"1\"\nSMTP_ALLOWUSER = \"\"\n")
			return CSF(path)
		}},
		{"imunify without ports", func() (Result, error) {
			path := filepath.Join(dir, "imunify.json")
			write(t, dir, "imunify.json", `{"SMTP_BLOCKING": {"enable": true}}`)
			return Imunify(path)
		}},
		{"cpanel", func() (Result, error) { return CPanel(cpanelRoot) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tt.run()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]int{25, 465, 587}, r.File.Ports); diff != "" {
				t.Errorf("imported ports (-want +got):\n%s", diff)
			}
		})
	}
	// CSF's SMTP_PORTS is taken as it says, 2525 included or not.
	write(t, dir, "csf2.conf", "SMTP_BLOCK = \"1\"\nSMTP_PORTS = \"25,587,2525\"\n")
	r, err := CSF(filepath.Join(dir, "csf2.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{25, 587, 2525}, r.File.Ports); diff != "" {
		t.Errorf("CSF SMTP_PORTS ports (-want +got):\n%s", diff)
	}
	// And a fresh install's default has 2525, so the difference is real.
	if got := policy.DefaultPorts(); !cmp.Equal(got, []uint16{25, 465, 587, 2525}) {
		t.Errorf("policy.DefaultPorts() = %v, want 2525 among them", got)
	}
}
