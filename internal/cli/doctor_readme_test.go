//go:build linux

package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	realnft "github.com/smtpguard/smtpguard/internal/enforce/nft"
)

// The README's doctor example is the command's real output on a fixture host
// (as TestReadmeExamplesAreRealOutput does for the others): Exim runs and
// greets on localhost:25, the daemon records, www-data is an ordinary user,
// and the provider drops outgoing port 25. SMTPGUARD_UPDATE_README=1
// rewrites the block.
func TestReadmeDoctorExampleIsRealOutput(t *testing.T) {
	h, n := doctorHost(t, true)
	n.dropped["192.0.2.25:25"] = true
	nft := fake.New("nft")
	nft.SetDescription(realnft.New(realnft.Config{Logger: slog.New(slog.DiscardHandler)}).Describe())
	h.opts.Backends = func(*slog.Logger) []enforce.Backend { return []enforce.Backend{nft} }
	h.ok("enable")
	h.ok("allow", "user", "alice")
	serveFake(t, h, nft)

	const cmd = "smtpguard doctor --user www-data --to mx.example.net"
	r := h.run("doctor", "--user", "www-data", "--to", "mx.example.net")
	if r.code != ExitFailure {
		t.Fatalf("%s: exit %d, want 1 (two checks fail); stderr %q", cmd, r.code, r.stderr)
	}
	path := filepath.Join("..", "..", "README.md")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	shown, start, end := readmeBlock(t, readme, cmd)
	if os.Getenv("SMTPGUARD_UPDATE_README") == "1" {
		if err := os.WriteFile(path, []byte(readme[:start]+r.stdout+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(normalizeExample(shown), normalizeExample(r.stdout)); diff != "" {
		t.Errorf("README.md's example of %q is not what the command prints (-README +real); rerun with SMTPGUARD_UPDATE_README=1 to rewrite it:\n%s", cmd, diff)
	}
}
