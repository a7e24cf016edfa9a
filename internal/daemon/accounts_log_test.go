package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// An account change that alters nobody's access (a login shell) is not
// logged as re-resolving the allowed uids; one that does is, once (issue 16:
// 141 of 165 log lines on a busy host).
func TestAccountChangesLogOnlyWhenAccessChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.eng.Enable(ctx, admin, "fake")
	f.eng.Allow(ctx, admin, policy.KindGroup, "mailers")
	var logs testutil.SyncBuffer
	d := f.start(t, Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const line = "re-resolving allowed uids"

	// chsh -s /bin/sh bob: the poll loop notices (it kicks), logs nothing.
	before := d.kicks.Load()
	write(t, f.cfg.PasswdPath, strings.Replace(testPasswd, "/home/bob:/bin/bash", "/home/bob:/bin/sh", 1))
	waitFor(t, "the poll loop to notice the passwd change", func() bool { return d.kicks.Load() > before })
	settle(t, d)
	if n := strings.Count(logs.String(), line); n != 0 {
		t.Errorf("a shell change logged %q %d times, want 0", line, n)
	}

	// usermod -aG mailers bob: bob may now connect, and the log says so.
	write(t, f.cfg.GroupPath, strings.Replace(testGroup, "mailers:x:2000:alice", "mailers:x:2000:alice,bob", 1))
	waitFor(t, "bob allowed after joining mailers", func() bool { return slices.Equal(f.backend.Installed().UIDs, []uint32{0, 1001, 1002}) })
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Errorf("joining an allowed group logged %q %d times, want 1", line, n)
	}
}
