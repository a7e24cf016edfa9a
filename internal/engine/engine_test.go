package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/fake"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

const testPasswd = `root:x:0:0:root:/root:/bin/bash
Debian-exim:x:101:102::/var/spool/exim4:/usr/sbin/nologin
alice:x:1001:1001::/home/alice:/bin/bash
bob:x:1002:2000::/home/bob:/bin/bash
carol:x:1003:1003::/home/carol:/bin/bash
dave:x:1004:1004::/home/dave:/bin/bash
`

// mailers (2000) is bob's primary group and carol's supplementary group.
const testGroup = `root:x:0:
Debian-exim:x:102:
alice:x:1001:
mailers:x:2000:carol
carol:x:1003:
dave:x:1004:
`

type fixture struct {
	eng      *Engine
	backend  *fake.Backend
	stateDir string
	cfg      Config
}

func newFixture(t *testing.T, mtaFiles ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	passwd := filepath.Join(dir, "passwd")
	group := filepath.Join(dir, "group")
	mustWrite(t, passwd, testPasswd)
	mustWrite(t, group, testGroup)
	root := filepath.Join(dir, "root")
	for _, f := range mtaFiles {
		mustWrite(t, filepath.Join(root, f), "")
	}
	b := fake.New("fake")
	cfg := Config{
		StateDir:   filepath.Join(dir, "state"),
		PasswdPath: passwd,
		GroupPath:  group,
		MTA:        mta.Config{Root: root},
		Backends:   []enforce.Backend{b},
	}
	eng, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { eng.Close() })
	return &fixture{eng: eng, backend: b, stateDir: cfg.StateDir, cfg: cfg}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

var admin = Actor{Name: "root", Source: "cli"}

// must fails the test when an operation fails: must(t)(eng.Allow(...)).
func must(t *testing.T) func(Result, error) Result {
	return func(res Result, err error) Result {
		t.Helper()
		if err != nil {
			t.Fatalf("operation failed: %v", err)
		}
		return res
	}
}

func (f *fixture) installedUIDs(t *testing.T) []uint32 {
	t.Helper()
	rs := f.backend.Installed()
	if rs == nil {
		t.Fatal("no ruleset installed in the kernel, want one")
	}
	return rs.UIDs
}

func (f *fixture) stored(t *testing.T) (policy.Policy, store.Meta) {
	t.Helper()
	p, meta, err := f.eng.Store().Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p, meta
}

func TestEnableInstallsRootMTAAndAllowedUsers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "usr/sbin/exim4")
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	if f.backend.Installed() != nil {
		t.Fatal("allow while disabled installed rules; want none until enable")
	}
	res := must(t)(f.eng.Enable(ctx, admin, "auto"))
	if !res.Changed || !strings.Contains(res.Message, "enabled") {
		t.Errorf("Enable() = %+v, want a change saying enabled", res)
	}
	if diff := cmp.Diff([]uint32{0, 101, 1001}, f.installedUIDs(t)); diff != "" {
		t.Errorf("installed uids (-want +got):\n%s", diff)
	}
	rs := f.backend.Installed()
	if rs.Mode != policy.ModeReject || !rs.AllowLocal || !cmp.Equal(rs.Ports, []uint16{25, 465, 587, 2525}) {
		t.Errorf("installed ruleset = %+v, want reject on 25,465,587,2525 (a fresh store's default) with local allowed", rs)
	}
	p, _ := f.stored(t)
	if !p.Enabled || p.Backend != "fake" {
		t.Errorf("stored policy enabled=%t backend=%q, want enabled with the chosen backend", p.Enabled, p.Backend)
	}
}

func TestGroupExpandsToPrimaryAndSupplementaryMembers(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.Allow(ctx, admin, policy.KindGroup, "mailers"))
	if diff := cmp.Diff([]uint32{0, 1002, 1003}, f.installedUIDs(t)); diff != "" {
		t.Errorf("uids after allowing group mailers (-want +got):\n%s", diff)
	}
	must(t)(f.eng.Revoke(ctx, admin, policy.KindGroup, "mailers"))
	if diff := cmp.Diff([]uint32{0}, f.installedUIDs(t)); diff != "" {
		t.Errorf("uids after revoking group mailers (-want +got):\n%s", diff)
	}
}

func TestEditsWhileEnabledTakeEffectAtOnce(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.SetPorts(ctx, admin, "25,465,587,2525"))
	must(t)(f.eng.SetMode(ctx, admin, "log"))
	must(t)(f.eng.SetAllowLocal(ctx, admin, "off"))
	rs := f.backend.Installed()
	want := policy.Ruleset{Mode: policy.ModeLog, Ports: []uint16{25, 465, 587, 2525}, AllowLocal: false, UIDs: []uint32{0}}
	if diff := cmp.Diff(want, *rs); diff != "" {
		t.Errorf("installed ruleset (-want +got):\n%s", diff)
	}
}

func TestEnforceFailureRollsBackAndIsAudited(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	before, beforeMeta := f.stored(t)
	f.backend.FailApply(errors.New("netlink: operation not permitted"))
	_, err := f.eng.Allow(ctx, admin, policy.KindUser, "alice")
	if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("Allow() with failing kernel = %v, want the kernel's error", err)
	}
	if IsValidation(err) {
		t.Errorf("a kernel failure was classified as bad input: %v", err)
	}
	after, afterMeta := f.stored(t)
	if !before.Equal(after) || afterMeta.Revision != beforeMeta.Revision {
		t.Errorf("stored policy changed after a failed enforce: before %+v (rev %d), after %+v (rev %d)", before, beforeMeta.Revision, after, afterMeta.Revision)
	}
	if diff := cmp.Diff([]uint32{0}, f.installedUIDs(t)); diff != "" {
		t.Errorf("kernel uids changed after a failed enforce (-want +got):\n%s", diff)
	}
	recs, err := f.eng.Audit(ctx, store.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Operation != "allow" || !strings.HasPrefix(recs[0].Outcome, "failed: ") {
		t.Errorf("latest audit record = %+v, want a failed allow", recs)
	}
}

func TestEnableFailureLeavesRestrictionDisabled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.backend.FailApply(errors.New("kernel says no"))
	if _, err := f.eng.Enable(ctx, admin, "fake"); err == nil {
		t.Fatal("Enable() with failing kernel = nil error, want failure")
	}
	if p, _ := f.stored(t); p.Enabled {
		t.Error("policy stored as enabled although the kernel refused the rules")
	}
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enabled {
		t.Error("status says enabled after a failed enable")
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		op   func(e *Engine) (Result, error)
		want string // part of the error message
	}{
		{"unknown user", func(e *Engine) (Result, error) { return e.Allow(ctx, admin, policy.KindUser, "mallory") }, `no such user "mallory"`},
		{"unknown group", func(e *Engine) (Result, error) { return e.Allow(ctx, admin, policy.KindGroup, "nogroup") }, `no such group "nogroup"`},
		{"garbage name", func(e *Engine) (Result, error) { return e.Allow(ctx, admin, policy.KindUser, "al ice;rm") }, "invalid user name"},
		{"port zero", func(e *Engine) (Result, error) { return e.SetPorts(ctx, admin, "0") }, "outside 1-65535"},
		{"port too big", func(e *Engine) (Result, error) { return e.SetPorts(ctx, admin, "70000") }, "outside 1-65535"},
		{"duplicate port", func(e *Engine) (Result, error) { return e.SetPorts(ctx, admin, "25,25") }, "listed twice"},
		{"garbage ports", func(e *Engine) (Result, error) { return e.SetPorts(ctx, admin, "smtp") }, "not a number"},
		{"bad mode", func(e *Engine) (Result, error) { return e.SetMode(ctx, admin, "drop") }, "unknown mode"},
		{"bad allow-local", func(e *Engine) (Result, error) { return e.SetAllowLocal(ctx, admin, "maybe") }, "use on or off"},
		{"unknown backend", func(e *Engine) (Result, error) { return e.Enable(ctx, admin, "bpf") }, `unknown backend "bpf"`},
		{"revoke unknown user", func(e *Engine) (Result, error) { return e.Revoke(ctx, admin, policy.KindUser, "mallory") }, `no such user`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			must(t)(f.eng.Enable(ctx, admin, "fake"))
			before, beforeMeta := f.stored(t)
			calls := len(f.backend.Calls())
			_, err := tt.op(f.eng)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if !IsValidation(err) {
				t.Errorf("IsValidation(%v) = false, want true", err)
			}
			after, afterMeta := f.stored(t)
			if !before.Equal(after) || afterMeta.Revision != beforeMeta.Revision {
				t.Errorf("stored policy changed on bad input")
			}
			for _, c := range f.backend.Calls()[calls:] {
				if c == "apply" || c == "remove" {
					t.Errorf("kernel call %q on bad input, want none", c)
				}
			}
		})
	}
}

func TestRepeatedAllowIsANoOp(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	res := must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "1001"))
	if res.Changed || !strings.Contains(res.Message, "already allowed") {
		t.Errorf("second Allow() = %+v, want unchanged, 'already allowed'", res)
	}
	res = must(t)(f.eng.Revoke(ctx, admin, policy.KindUser, "dave"))
	if res.Changed || !strings.Contains(res.Message, "was not allowed") {
		t.Errorf("Revoke() of a user never allowed = %+v, want unchanged", res)
	}
	recs, _ := f.eng.Audit(ctx, store.AuditFilter{})
	if len(recs) != 1 {
		t.Errorf("audit has %d records, want 1 (no-ops are not changes)", len(recs))
	}
}

func TestAuditRecordsWhoWhatBeforeAfter(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.eng.cfg.Now = func() time.Time { return now }
	must(t)(f.eng.Allow(ctx, Actor{Name: "alice (sudo by bob)", Source: "cli"}, policy.KindUser, "carol"))
	recs, err := f.eng.Audit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("audit = %d records, want 1", len(recs))
	}
	r := recs[0]
	if r.Actor != "alice (sudo by bob)" || r.Source != "cli" || r.Operation != "allow" || r.Detail != "user carol" || r.Outcome != "ok" || !r.At.Equal(now) {
		t.Errorf("audit record = %+v", r)
	}
	if strings.Contains(r.Before, "carol") || !strings.Contains(r.After, `"carol"`) {
		t.Errorf("audit before/after = %s / %s, want carol only after", r.Before, r.After)
	}
}

func TestDisableRemovesRulesEvenWhenAlreadyDisabled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	must(t)(f.eng.Disable(ctx, admin))
	if f.backend.Installed() != nil {
		t.Fatal("rules still installed after disable")
	}
	// Simulate a leftover table (a crash between kernel and commit).
	f.backend.Apply(ctx, policy.Ruleset{})
	audited := func() int {
		recs, err := f.eng.Audit(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(recs)
	}
	before := audited()
	// Lifting rules that were still enforcing is a change: reported and
	// audited.
	if res := must(t)(f.eng.Disable(ctx, admin)); !res.Changed {
		t.Errorf("Disable() of leftover rules = %+v, want a change", res)
	}
	if f.backend.Installed() != nil {
		t.Error("disable on a disabled policy left a leftover ruleset in place")
	}
	if got := audited(); got != before+1 {
		t.Errorf("audit records after removing leftovers: %d, want %d", got, before+1)
	}
	if res := must(t)(f.eng.Disable(ctx, admin)); res.Changed {
		t.Errorf("Disable() with nothing left = %+v, want no change", res)
	}
	if got := audited(); got != before+1 {
		t.Errorf("a Disable() that changed nothing was audited: %d records, want %d", got, before+1)
	}
}

func TestEnableTwiceRepairsKernel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Enable(ctx, admin, "fake"))
	f.backend.Remove(ctx) // someone flushed the ruleset
	st, _ := f.eng.Status(ctx)
	if st.Kernel.State != "drift" {
		t.Errorf("status kernel state after flush = %q, want drift", st.Kernel.State)
	}
	res := must(t)(f.eng.Enable(ctx, admin, "fake"))
	if res.Changed || !strings.Contains(res.Message, "re-applied") {
		t.Errorf("Enable() again = %+v, want 're-applied'", res)
	}
	if f.backend.Installed() == nil {
		t.Error("enable again did not re-install the rules")
	}
	st, _ = f.eng.Status(ctx)
	if st.Kernel.State != "in sync" {
		t.Errorf("status kernel state = %q, want in sync", st.Kernel.State)
	}
}

func TestImportReplacesPolicyOrNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
	good, err := policy.DecodeFile([]byte("version = 1\nenabled = true\nports = [25, 2525]\nallowed_groups = [\"mailers\"]\n"), policy.FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	must(t)(f.eng.Import(ctx, admin, good, "fleet.toml"))
	if diff := cmp.Diff([]uint32{0, 1002, 1003}, f.installedUIDs(t)); diff != "" {
		t.Errorf("uids after import (-want +got):\n%s", diff)
	}
	p, _ := f.stored(t)
	if len(p.Users) != 0 || !cmp.Equal(p.Ports, []uint16{25, 2525}) || p.Backend != "fake" {
		t.Errorf("stored policy after import = %+v", p)
	}
	bad, err := policy.DecodeFile([]byte("version = 1\nenabled = false\nports = [0]\nallowed_users = [\"mallory\"]\n"), policy.FormatTOML)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.eng.Import(ctx, admin, bad, "bad.toml")
	if err == nil || !strings.Contains(err.Error(), "ports[0]") || !strings.Contains(err.Error(), "allowed_users[0]") {
		t.Fatalf("Import(bad) = %v, want every problem with its field", err)
	}
	after, _ := f.stored(t)
	if !after.Equal(p) {
		t.Error("a rejected import changed the stored policy")
	}
}

func TestStatusReportsMTAAndUnresolved(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "usr/sbin/exim4")
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "dave"))
	// dave's account is deleted afterwards.
	mustWrite(t, f.cfg.PasswdPath, strings.ReplaceAll(testPasswd, "dave:x:1004:1004::/home/dave:/bin/bash\n", ""))
	st, err := f.eng.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.MTA.Primary() != "exim" {
		t.Errorf("status MTA = %q, want exim", st.MTA.Primary())
	}
	if len(st.Unresolved) != 1 || !strings.Contains(st.Unresolved[0], "dave") {
		t.Errorf("status unresolved = %v, want dave reported", st.Unresolved)
	}
	var users []string
	for _, g := range st.AllowedUIDs {
		users = append(users, g.User)
	}
	if diff := cmp.Diff([]string{"root", "Debian-exim"}, users); diff != "" {
		t.Errorf("status allowed uids (-want +got):\n%s", diff)
	}
	// A deleted account can still be revoked by name.
	must(t)(f.eng.Revoke(ctx, admin, policy.KindUser, "dave"))
}

func TestLockSerialisesProcesses(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	lock, err := os.OpenFile(filepath.Join(f.stateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() })
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = f.eng.Allow(short, admin, policy.KindUser, "alice")
	if err == nil || !strings.Contains(err.Error(), "another smtpguard command holds") {
		t.Fatalf("Allow() while another process holds the lock = %v, want a lock error", err)
	}
	unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	must(t)(f.eng.Allow(ctx, admin, policy.KindUser, "alice"))
}

func TestConcurrentEnginesLoseNoUpdate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	second, err := Open(ctx, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	users := []string{"alice", "bob", "carol", "dave"}
	var wg sync.WaitGroup
	errs := make(chan error, len(users))
	for i, u := range users {
		eng := f.eng
		if i%2 == 1 {
			eng = second
		}
		wg.Go(func() {
			_, err := eng.Allow(ctx, admin, policy.KindUser, u)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent Allow() = %v", err)
		}
	}
	p, meta := f.stored(t)
	if len(p.Users) != len(users) || meta.Revision != int64(len(users)) {
		t.Errorf("after %d concurrent allows: %d users stored, revision %d; an update was lost", len(users), len(p.Users), meta.Revision)
	}
}

func TestPlanChangesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	must(t)(f.eng.Allow(ctx, admin, policy.KindGroup, "mailers"))
	pl, err := f.eng.Plan(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint32{0, 1002, 1003}, pl.Ruleset.UIDs); diff != "" {
		t.Errorf("plan uids (-want +got):\n%s", diff)
	}
	if pl.Backend != "fake" || !strings.Contains(pl.Rendered, "uids=[0 1002 1003]") {
		t.Errorf("plan = %+v", pl)
	}
	if f.backend.Installed() != nil {
		t.Error("plan installed rules")
	}
	if p, _ := f.stored(t); p.Enabled {
		t.Error("plan enabled the policy")
	}
}
