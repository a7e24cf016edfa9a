package store

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
	"github.com/smtpguard/smtpguard/internal/policy"
)

func TestZZProbe(t *testing.T) {
	ctx := context.Background()
	for _, d := range []string{"a#b", "a%41b", "a?b", "a b"} {
		dir := filepath.Join(t.TempDir(), d)
		s, err := Open(ctx, filepath.Join(dir, FileName))
		t.Logf("%q: err=%v", d, err)
		if err == nil {
			tx, _ := s.Begin(ctx)
			_, err := tx.PutPolicy(ctx, policy.Default(), time.Now(), "x")
			t.Logf("  put: %v commit: %v", err, tx.Commit())
			s.Close()
		}
		filepath.Walk(filepath.Dir(dir), func(p string, fi os.FileInfo, err error) error { t.Logf("  %s %v %d", p, fi.Mode(), fi.Size()); return nil })
	}
	path := filepath.Join(t.TempDir(), FileName)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s, err := Open(ctx, path); if err != nil { t.Errorf("concurrent open: %v", err); return }; s.Close() }()
	}
	wg.Wait()
}
