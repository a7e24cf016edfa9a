package engine

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// benchEngine opens an engine on the fake backend with the test accounts.
func benchEngine(b *testing.B) *Engine {
	b.Helper()
	dir := b.TempDir()
	for name, content := range map[string]string{"passwd": testPasswd, "group": testGroup} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	eng, err := Open(b.Context(), Config{
		StateDir:   filepath.Join(dir, "state"),
		PasswdPath: filepath.Join(dir, "passwd"),
		GroupPath:  filepath.Join(dir, "group"),
		MTA:        mta.Config{Root: filepath.Join(dir, "root")},
		Backends:   []enforce.Backend{fake.New("fake")},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	return eng
}

// numberedFile is an enabled policy file allowing n uids, 20000 upwards.
func numberedFile(n int) policy.File {
	f := policy.ToFile(policy.Default())
	f.Enabled, f.Backend = true, "fake"
	for i := range n {
		f.AllowedUsers = append(f.AllowedUsers, strconv.Itoa(20000+i))
	}
	return f
}

func benchImport(ctx context.Context, b *testing.B, eng *Engine, f policy.File) {
	b.Helper()
	if _, err := eng.Import(ctx, admin, f, "bench.toml"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkImport10k imports a file of 10,000 allowed users over a policy of
// 3 (issue 12, hole 7: the import scanned the list for every entry).
func BenchmarkImport10k(b *testing.B) {
	eng, ctx := benchEngine(b), b.Context()
	many, few := numberedFile(10000), numberedFile(3)
	for b.Loop() {
		b.StopTimer()
		benchImport(ctx, b, eng, few)
		b.StartTimer()
		benchImport(ctx, b, eng, many)
	}
}

// BenchmarkImport10kTo3 imports a file of 3 allowed users over a policy of
// 10,000.
func BenchmarkImport10kTo3(b *testing.B) {
	eng, ctx := benchEngine(b), b.Context()
	many, few := numberedFile(10000), numberedFile(3)
	for b.Loop() {
		b.StopTimer()
		benchImport(ctx, b, eng, many)
		b.StartTimer()
		benchImport(ctx, b, eng, few)
	}
}
