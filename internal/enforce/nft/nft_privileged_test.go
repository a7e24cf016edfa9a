//go:build linux

package nft

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

var _ enforce.Backend = (*Backend)(nil)

func TestMain(m *testing.M) {
	maybeRunSRHHelper()
	maybeRunOwnerHelper()
	testutil.MaybeRunHelper()
	os.Exit(m.Run())
}

// nsBackend returns a backend bound to a fresh network namespace, so nothing
// here touches the host's ruleset.
func nsBackend(t *testing.T) (*Backend, *testutil.NetNS) {
	t.Helper()
	testutil.Privileged(t)
	ns := testutil.NewNetNS(t)
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return New(Config{NetNSFD: int(f.Fd())}), ns
}

func baseRuleset() policy.Ruleset {
	return policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25, 465, 587}, AllowLocal: true, UIDs: []uint32{0, 101}}
}

func mustApply(t *testing.T, b *Backend, rs policy.Ruleset) {
	t.Helper()
	if err := b.Apply(context.Background(), rs); err != nil {
		t.Fatalf("Apply() = %v", err)
	}
}

func assertInSync(t *testing.T, b *Backend, rs policy.Ruleset) {
	t.Helper()
	d, err := b.Verify(context.Background(), rs)
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if !d.InSync() {
		t.Errorf("Verify() = %s, want in sync", d)
	}
}

var counters = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func listTable(t *testing.T, ns *testutil.NetNS) string {
	t.Helper()
	return counters.ReplaceAllString(ns.Exec(t, "nft", "list", "table", "inet", tableName), "counter")
}

func TestPrivilegedApplyVerifyRemove(t *testing.T) {
	b, ns := nsBackend(t)
	ctx := context.Background()
	if err := b.Probe(ctx); err != nil {
		t.Fatalf("Probe() = %v", err)
	}
	if out := ns.Exec(t, "nft", "list", "tables"); strings.Contains(out, "probe") {
		t.Errorf("Probe left a table behind: %s", out)
	}
	rs := baseRuleset()
	d, err := b.Verify(ctx, rs)
	if err != nil || d.InSync() || !strings.Contains(d.String(), "missing") {
		t.Errorf("Verify() before Apply = %s, %v; want the table reported missing", d, err)
	}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	listed := listTable(t, ns)
	for _, want := range []string{"hook output priority filter; policy accept;", "reject with tcp reset", "log prefix \"smtpguard blocked\" group 2525", "elements = { 25, 465, 587 }", "fib daddr type local accept"} {
		if !strings.Contains(listed, want) {
			t.Errorf("nft list table lacks %q:\n%s", want, listed)
		}
	}
	// Applying the same ruleset again changes nothing.
	mustApply(t, b, rs)
	if again := listTable(t, ns); again != listed {
		t.Errorf("re-applying changed the table:\n%s\nwas:\n%s", again, listed)
	}
	if err := b.Remove(ctx); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if out := ns.Exec(t, "nft", "list", "tables"); strings.Contains(out, tableName) {
		t.Errorf("table still present after Remove: %s", out)
	}
	if err := b.Remove(ctx); err != nil {
		t.Errorf("Remove() of a missing table = %v, want success", err)
	}
}

func ruleHandles(t *testing.T, ns *testutil.NetNS) string {
	t.Helper()
	out := ns.Exec(t, "nft", "-a", "list", "chain", "inet", tableName, chainCheck)
	return strings.Join(regexp.MustCompile(`# handle \d+`).FindAllString(out, -1), " ")
}

func TestPrivilegedSetChangesAreIncremental(t *testing.T) {
	b, ns := nsBackend(t)
	rs := baseRuleset()
	mustApply(t, b, rs)
	handles := ruleHandles(t, ns)
	rs.UIDs = []uint32{0, 101, 1001, 1002}
	rs.Ports = []uint16{25, 465, 587, 2525}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	if got := ruleHandles(t, ns); got != handles {
		t.Errorf("rule handles changed from %q to %q: a uid/port change rebuilt the table instead of updating sets", handles, got)
	}
	listed := listTable(t, ns)
	if !strings.Contains(listed, "1001") || !strings.Contains(listed, "2525") {
		t.Errorf("sets not updated:\n%s", listed)
	}
	// A mode change is structural: the table is rebuilt and verifies.
	rs.Mode = policy.ModeLog
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	if strings.Contains(listTable(t, ns), "reject") {
		t.Error("log mode still rejects")
	}
}

func TestPrivilegedScalesToTenThousandUIDs(t *testing.T) {
	b, ns := nsBackend(t)
	rs := baseRuleset()
	for uid := uint32(10000); uid < 20000; uid++ {
		rs.UIDs = append(rs.UIDs, uid)
	}
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	handles := ruleHandles(t, ns)
	rs.UIDs = append(rs.UIDs[:len(rs.UIDs)-1], 30000) // swap one uid
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	if got := ruleHandles(t, ns); got != handles {
		t.Error("changing one of 10,000 uids rebuilt the table")
	}
	want := len(rules(rs, DefaultLogGroup, nil, nil))
	if n := strings.Count(listTable(t, ns), "comment \"smtpguard "); n != want {
		t.Errorf("%d rules for 10,000 uids, want %d: per-packet cost must not grow with users", n, want)
	}
}

func TestPrivilegedVerifyDetectsDrift(t *testing.T) {
	tests := []struct {
		name    string
		tamper  []string // nft command run in the namespace
		problem string
	}{
		{"ruleset flushed", []string{"flush", "ruleset"}, "table inet smtpguard is missing"},
		{"chain flushed", []string{"flush", "chain", "inet", tableName, chainCheck}, "chain smtp_check: rules differ"},
		{"uid added", []string{"add", "element", "inet", tableName, setUIDs, "{ 4242 }"}, "set allowed_uids: 0 element(s) missing, 1 unexpected"},
		{"port removed", []string{"delete", "element", "inet", tableName, setPorts, "{ 587 }"}, "set smtp_ports: 1 element(s) missing"},
		{"foreign chain added", []string{"add", "chain", "inet", tableName, "sneaky"}, "unexpected chain sneaky"},
		{"base chain policy changed", []string{"add", "chain", "inet", tableName, chainOut, "{ type filter hook output priority filter; policy drop; }"}, "chain output: wrong policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ns := nsBackend(t)
			rs := baseRuleset()
			mustApply(t, b, rs)
			ns.Exec(t, "nft", tt.tamper...)
			d, err := b.Verify(context.Background(), rs)
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if !strings.Contains(d.String(), tt.problem) {
				t.Errorf("Verify() after %s = %q, want it to report %q", tt.name, d, tt.problem)
			}
			// Apply repairs whatever was done.
			mustApply(t, b, rs)
			assertInSync(t, b, rs)
		})
	}
}

func TestPrivilegedNeverTouchesOtherTables(t *testing.T) {
	b, ns := nsBackend(t)
	other := filepath.Join(t.TempDir(), "other.nft")
	const foreign = `table ip smtpguard {
	chain output {
		type filter hook output priority 10; policy accept;
		tcp dport 25 counter
	}
}
table inet firewall {
	set smtp_ports {
		type inet_service
		elements = { 1 }
	}
	chain output {
		type filter hook output priority 0; policy accept;
	}
}
`
	if err := os.WriteFile(other, []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Exec(t, "nft", "-f", other)
	before := counters.ReplaceAllString(ns.Exec(t, "nft", "list", "table", "ip", tableName), "")
	beforeFW := ns.Exec(t, "nft", "list", "table", "inet", "firewall")
	mustApply(t, b, baseRuleset())
	rs := baseRuleset()
	rs.UIDs = append(rs.UIDs, 5000)
	mustApply(t, b, rs)
	assertInSync(t, b, rs)
	if err := b.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := counters.ReplaceAllString(ns.Exec(t, "nft", "list", "table", "ip", tableName), ""); after != before {
		t.Errorf("table ip smtpguard (not ours: another family) changed:\n%s\nwas:\n%s", after, before)
	}
	if after := ns.Exec(t, "nft", "list", "table", "inet", "firewall"); after != beforeFW {
		t.Errorf("table inet firewall changed:\n%s\nwas:\n%s", after, beforeFW)
	}
}

func TestPrivilegedRenderedRulesetLoadsWithNft(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft binary missing (make test installs nftables): %v", err)
	}
	for name, rs := range testRulesets() {
		t.Run(name, func(t *testing.T) {
			ns := testutil.NewNetNS(t)
			file := filepath.Join(t.TempDir(), name+".nft")
			if err := os.WriteFile(file, []byte(render(rs, testLogGroup(name))), 0o644); err != nil {
				t.Fatal(err)
			}
			ns.Exec(t, "nft", "-f", file)
			// What nft loaded from our text is what our netlink code verifies.
			f, err := os.Open(ns.Path())
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := New(Config{NetNSFD: int(f.Fd()), LogGroup: testLogGroup(name)})
			d, err := b.Verify(context.Background(), rs)
			if err != nil || !d.InSync() {
				t.Errorf("ruleset loaded by nft from Render() output: Verify() = %s, %v; want in sync (text and netlink forms disagree)", d, err)
			}
		})
	}
}

// The backend remembers the table it last read or wrote, by ruleset
// generation, to skip dumping 10,000 uids again. That memory must never hide a
// change made by anyone else, and what it remembers after a set update must
// be what the kernel really holds.
func TestPrivilegedKnownStateNeverHidesDrift(t *testing.T) {
	b, ns := nsBackend(t)
	f, err := os.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fresh := func() *Backend { return New(Config{NetNSFD: int(f.Fd())}) }

	rs := baseRuleset()
	mustApply(t, b, rs)
	assertInSync(t, b, rs) // b now knows the table
	more := rs
	more.UIDs = []uint32{0, 101, 500, 501}
	more.Exceptions = []policy.ExceptionRule{
		{UID: 600, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 587},
		{UID: 601, Dst: netip.MustParsePrefix("2001:db8::25/128"), Port: 25},
	}
	mustApply(t, b, more) // an incremental update b remembers without reading back
	if b.known == nil {
		t.Fatal("after an incremental update the backend remembers nothing: the test does not exercise the cache")
	}
	assertInSync(t, fresh(), more)
	assertInSync(t, b, more)
	// Knowing the table matches one ruleset says nothing about another.
	if d, err := b.Verify(context.Background(), rs); err != nil || d.InSync() {
		t.Fatalf("Verify(another ruleset) right after applying more = %v, %v; want drift", d, err)
	}

	for _, tamper := range [][]string{
		{"add", "element", "inet", tableName, setUIDs, "{ 4242 }"},
		{"delete", "element", "inet", tableName, setUIDs, "{ 500 }"},
		{"delete", "element", "inet", tableName, setPorts, "{ 587 }"},
		{"delete", "element", "inet", tableName, setExc4, "{ 600 . 192.0.2.0/24 . 587 }"},
		{"flush", "ruleset"},
	} {
		assertInSync(t, b, more)
		ns.Exec(t, "nft", tamper...)
		d, err := b.Verify(context.Background(), more)
		if err != nil {
			t.Fatal(err)
		}
		if d.InSync() {
			t.Fatalf("after nft %s, Verify by the backend that knew the table = in sync; want drift", strings.Join(tamper, " "))
		}
		mustApply(t, b, more)
		assertInSync(t, fresh(), more)
	}
	// Changes by another process's backend (the CLI beside the daemon).
	other := rs
	other.UIDs = []uint32{0, 101, 777}
	mustApply(t, fresh(), other)
	if d, err := b.Verify(context.Background(), more); err != nil || d.InSync() {
		t.Fatalf("after another backend applied a different set, Verify = %v, %v; want drift", d, err)
	}
	mustApply(t, b, more)
	assertInSync(t, fresh(), more)
}
