package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// lockOut fails five sign-ins of name from remote, as the web UI does, in
// the harness's state directory.
func (h *harness) lockOut(name, remote string) {
	h.t.Helper()
	ctx := context.Background()
	eng, err := engine.Open(ctx, engine.Config{StateDir: h.stateDir, PasswdPath: h.opts.PasswdPath, GroupPath: h.opts.GroupPath})
	if err != nil {
		h.t.Fatal(err)
	}
	defer eng.Close()
	for range 5 {
		a, err := eng.BeginSignIn(ctx, engine.Lockout{}, name, remote)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := eng.FailSignIn(ctx, engine.Actor{Name: "anonymous", Source: "web", Remote: remote}, a); err != nil {
			h.t.Fatal(err)
		}
	}
	if !h.lockedOut(name, remote) {
		h.t.Fatal("five failures did not lock the account out")
	}
}

// lockedOut reports whether a sign-in of name from remote is refused.
func (h *harness) lockedOut(name, remote string) bool {
	h.t.Helper()
	ctx := context.Background()
	eng, err := engine.Open(ctx, engine.Config{StateDir: h.stateDir, PasswdPath: h.opts.PasswdPath, GroupPath: h.opts.GroupPath})
	if err != nil {
		h.t.Fatal(err)
	}
	defer eng.Close()
	a, err := eng.BeginSignIn(ctx, engine.Lockout{}, name, remote)
	var refused *engine.SignInRefused
	if errors.As(err, &refused) {
		return true
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if err := eng.AbandonSignIn(ctx, a); err != nil {
		h.t.Fatal(err)
	}
	return false
}

func TestAccountUnlockLiftsALockout(t *testing.T) {
	h := newHarness(t)
	h.okIn("first-password-1\n", "account", "add", "admin", "--role", "admin")
	h.lockOut("admin", "127.0.0.1")
	if list := h.ok("account", "list"); !strings.Contains(list, "Sign-in lockouts") || !strings.Contains(list, "127.0.0.1") {
		t.Errorf("account list does not show the lockout:\n%s", list)
	}
	out := h.ok("account", "unlock", "admin")
	if !strings.Contains(out, "sign-in lockout of account admin lifted") {
		t.Errorf("account unlock printed %q", out)
	}
	if h.lockedOut("admin", "127.0.0.1") {
		t.Error("still locked out after 'account unlock'")
	}
	if list := h.ok("account", "list"); strings.Contains(list, "Sign-in lockouts") {
		t.Errorf("account list still shows a lockout after unlock:\n%s", list)
	}
	if out := h.ok("account", "unlock", "admin"); !strings.Contains(out, "nothing changed") {
		t.Errorf("second unlock printed %q, want nothing changed", out)
	}
	recs, err := h.openStore().Audit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var unlocks int
	for _, r := range recs {
		if r.Operation == "account unlock" {
			unlocks++
			if r.Actor != "tester" || r.Source != "cli" || r.Detail != "admin" {
				t.Errorf("unlock audited as %+v", r)
			}
		}
	}
	if unlocks != 1 {
		t.Errorf("%d account unlock records, want 1 (the second unlock changed nothing)", unlocks)
	}
	if r := h.run("account", "unlock", "Bad Name"); r.code != ExitUsage || !strings.Contains(r.stderr, "invalid account name") {
		t.Errorf("unlock of a bad name: exit %d %q, want 2", r.code, r.stderr)
	}
	if r := h.run("account", "unlock", "--help"); r.code != 0 || !strings.Contains(r.stdout, "client address") {
		t.Errorf("account unlock --help: exit %d %q", r.code, r.stdout)
	}
	if out := h.ok("account", "unlock", "admin", "--json"); !strings.Contains(out, `"changed": false`) {
		t.Errorf("account unlock --json = %s", out)
	}
}
