//go:build linux

package nft

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// world is a client namespace, where the backend enforces, joined by a veth
// pair to a server namespace with SMTP listeners.
type world struct {
	client, server *testutil.NetNS
	nsFD           int // the client namespace, for Config.NetNSFD
}

const (
	serverV4 = "192.0.2.2"
	serverV6 = "2001:db8::2"
)

// newWorld builds the namespaces; sysctls ("key=value") are set in both
// before the veth pair exists, so "default" settings reach its interfaces.
func newWorld(t *testing.T, sysctls ...string) *world {
	t.Helper()
	testutil.Privileged(t)
	w := &world{client: testutil.NewNetNS(t), server: testutil.NewNetNS(t)}
	for _, kv := range sysctls {
		w.client.Exec(t, "sysctl", "-qw", kv)
		w.server.Exec(t, "sysctl", "-qw", kv)
	}
	testutil.Veth(t, w.client, []string{"192.0.2.1/24", "2001:db8::1/64"}, w.server, []string{serverV4 + "/24", serverV6 + "/64"})
	for _, addr := range []string{serverV4, serverV6} {
		for _, port := range []int{25, 587, 8080} {
			testutil.ListenTCP(t, w.server, testutil.HostPort(addr, port))
		}
	}
	f, err := os.Open(w.client.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	w.nsFD = int(f.Fd())
	return w
}

// backend is an nft backend in the client namespace; owner as Config.Owner.
func (w *world) backend(owner ...bool) *Backend {
	return New(Config{NetNSFD: w.nsFD, Owner: len(owner) > 0 && owner[0]})
}

// connects reports whether u's connect to addr from the client gets through.
func (w *world) connects(t *testing.T, u *testutil.User, addr string) bool {
	t.Helper()
	r := testutil.ConnectAs(t, w.client, u, addr)[0]
	if !r.OK && r.Errno != "ECONNREFUSED" {
		t.Fatalf("connect to %s: %s; want success or ECONNREFUSED (a reset)", addr, r)
	}
	return r.OK
}

var handleRE = regexp.MustCompile(`# handle (\d+)`)

// ruleHandle finds the handle of the rule of chain whose text contains text.
func ruleHandle(t *testing.T, ns *testutil.NetNS, chain, text string) string {
	t.Helper()
	out := ns.Exec(t, "nft", "-a", "list", "chain", "inet", tableName, chain)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, text) {
			if m := handleRE.FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no rule containing %q in chain %s:\n%s", text, chain, out)
	return ""
}

// specByText is the rule of rs whose text starts with prefix.
func specByText(t *testing.T, rs policy.Ruleset, prefix string) ruleSpec {
	t.Helper()
	for _, r := range rules(rs, DefaultLogGroup, nil, nil) {
		if strings.HasPrefix(r.text, prefix) {
			return r
		}
	}
	t.Fatalf("no rule starting with %q", prefix)
	return ruleSpec{}
}

// notRule is Verify's complaint about rule r of rs.
func notRule(rs policy.Ruleset, r ruleSpec) string {
	n := 0
	for _, o := range rules(rs, DefaultLogGroup, nil, nil) {
		if o.chain == r.chain {
			n++
		}
		if o.text == r.text {
			break
		}
	}
	return fmt.Sprintf("chain %s: rules differ: rule %d is not %q", r.chain, n, r.text)
}

// Hole 1 of issue 12: a rule edited in place, keeping its comment and its
// number of expressions, must be drift, and Apply must repair it.
func TestPrivilegedVerifyDetectsEditedRules(t *testing.T) {
	testutil.Privileged(t)
	blocked := testutil.NewUser(t, "edblk", "")
	rs := baseRuleset()
	allow := specByText(t, rs, "meta skuid @")
	block := specByText(t, rs, "counter log")
	tests := []struct {
		name    string
		tamper  func(t *testing.T, w *world)
		problem string
	}{
		{"allow rule inverted to a single uid", func(t *testing.T, w *world) {
			h := ruleHandle(t, w.client, chainCheck, "meta skuid @"+setUIDs)
			w.client.Exec(t, "nft", "replace", "rule", "inet", tableName, chainCheck, "handle", h,
				"meta", "skuid", "!=", "12345", "accept", "comment", fmt.Sprintf("%q", allow.comment()))
		}, notRule(rs, allow)},
		{"block rule accepts instead of rejecting", func(t *testing.T, w *world) {
			h := ruleHandle(t, w.client, chainCheck, "reject with tcp reset")
			w.client.Exec(t, "nft", "replace", "rule", "inet", tableName, chainCheck, "handle", h,
				"meta", "l4proto", "tcp", "counter", "log", "prefix", `"smtpguard blocked"`, "group", "2525", "accept",
				"comment", fmt.Sprintf("%q", block.comment()))
		}, notRule(rs, block)},
		{"block rule gains an expression google/nftables does not list", func(t *testing.T, w *world) {
			// A byteorder between "meta l4proto" and its comparison turns
			// tcp (6) into 0x06000000, so the rule never matches. The
			// library's rule listing skips byteorder: only our own dump sees it.
			c, err := nftables.New(nftables.WithNetNSFd(w.nsFD))
			if err != nil {
				t.Fatal(err)
			}
			var h uint64
			fmt.Sscan(ruleHandle(t, w.client, chainCheck, "reject with tcp reset"), &h)
			exprs := append([]expr.Any{block.exprs[0],
				&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4}},
				block.exprs[1:]...)
			c.ReplaceRule(&nftables.Rule{Table: table(), Chain: &nftables.Chain{Name: chainCheck, Table: table()},
				Handle: h, Exprs: exprs, UserData: block.userData()})
			if err := c.Flush(); err != nil {
				t.Fatalf("replace the block rule over netlink: %v", err)
			}
		}, notRule(rs, block)},
		{"table made dormant", func(t *testing.T, w *world) {
			w.client.Exec(t, "nft", "add", "table", "inet", tableName, "{ flags dormant; }")
		}, "table inet smtpguard is dormant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			b := w.backend()
			mustApply(t, b, rs)
			assertInSync(t, b, rs) // the backend now knows the table
			dst := testutil.HostPort(serverV4, 25)
			if w.connects(t, &blocked, dst) {
				t.Fatal("blocked user connected before any tampering")
			}
			tt.tamper(t, w)
			if !w.connects(t, &blocked, dst) {
				t.Fatal("after tampering the blocked user is still refused: the tamper does not test a hole")
			}
			d, err := b.Verify(context.Background(), rs)
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if !strings.Contains(d.String(), tt.problem) {
				t.Errorf("Verify() after tampering = %q, want it to report %q", d, tt.problem)
			}
			mustApply(t, b, rs)
			assertInSync(t, b, rs)
			assertInSync(t, w.backend(), rs)
			if w.connects(t, &blocked, dst) {
				t.Errorf("after Apply repaired the table the blocked user still connects to %s", dst)
			}
		})
	}
}
