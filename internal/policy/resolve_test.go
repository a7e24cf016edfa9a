package policy

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Principals as the administrator would have added them against testDirectory.
var (
	prAlice     = Principal{Kind: KindUser, Name: "alice", ID: 1001}
	prBob       = Principal{Kind: KindUser, Name: "bob", ID: 1002}
	prDave      = Principal{Kind: KindUser, Name: "dave", ID: 1004}
	prUID1001   = Principal{Kind: KindUser, Name: "alice", ID: 1001, ByID: true}
	prUID1002   = Principal{Kind: KindUser, Name: "bob", ID: 1002, ByID: true}
	prUID4242   = Principal{Kind: KindUser, ID: 4242, ByID: true}
	prMailers   = Principal{Kind: KindGroup, Name: "mailers", ID: 2000}
	prGID3000   = Principal{Kind: KindGroup, Name: "ops", ID: 3000, ByID: true}
	prGID4000   = Principal{Kind: KindGroup, ID: 4000, ByID: true}
	prGID5000   = Principal{Kind: KindGroup, ID: 5000, ByID: true}
	prGhostUser = Principal{Kind: KindUser, Name: "ghost", ID: 1500}
	prOldTeam   = Principal{Kind: KindGroup, Name: "oldteam", ID: 2000} // deleted; its old gid is now mailers'
)

var (
	sysExim    = SystemUser{Name: "Debian-exim", Reason: "MTA exim4"}
	sysList    = SystemUser{Name: "list", Reason: "list manager mailman"}
	sysPostfix = SystemUser{Name: "postfix", Reason: "MTA postfix"} // no such account in testDirectory
)

var rootGrant = Grant{UID: 0, User: "root", Reasons: []string{"root"}}

func TestResolveCases(t *testing.T) {
	dir := testDirectory(t)
	tests := []struct {
		name   string
		users  []Principal
		groups []Principal
		system []SystemUser
		want   Resolution
	}{
		{
			name: "root is always allowed",
			want: Resolution{UIDs: []uint32{0}, Grants: []Grant{rootGrant}},
		},
		{
			name:   "system users only when the account exists",
			system: []SystemUser{sysPostfix, sysExim, sysList},
			want: Resolution{
				UIDs: []uint32{0, 38, 101},
				Grants: []Grant{
					rootGrant,
					{UID: 38, User: "list", Reasons: []string{"list manager mailman"}},
					{UID: 101, User: "Debian-exim", Reasons: []string{"MTA exim4"}},
				},
			},
		},
		{
			name:  "allowed user by name",
			users: []Principal{prAlice},
			want: Resolution{
				UIDs:   []uint32{0, 1001},
				Grants: []Grant{rootGrant, {UID: 1001, User: "alice", Reasons: []string{"allowed user alice"}}},
			},
		},
		{
			name:  "user by name follows a renumbered account",
			users: []Principal{{Kind: KindUser, Name: "alice", ID: 999}},
			want: Resolution{
				UIDs:   []uint32{0, 1001},
				Grants: []Grant{rootGrant, {UID: 1001, User: "alice", Reasons: []string{"allowed user alice"}}},
			},
		},
		{
			name:  "allowed user by uid with an account",
			users: []Principal{prUID1002},
			want: Resolution{
				UIDs:   []uint32{0, 1002},
				Grants: []Grant{rootGrant, {UID: 1002, User: "bob", Reasons: []string{"allowed user 1002"}}},
			},
		},
		{
			name:  "allowed user by uid without an account",
			users: []Principal{prUID4242},
			want: Resolution{
				UIDs:   []uint32{0, 4242},
				Grants: []Grant{rootGrant, {UID: 4242, Reasons: []string{"allowed user 4242"}}},
			},
		},
		{
			name:   "group expands to primary and supplementary members",
			groups: []Principal{prMailers},
			// bob's primary group is mailers, carol is listed in /etc/group;
			// ghost is listed too but has no account.
			want: Resolution{
				UIDs: []uint32{0, 1002, 1003},
				Grants: []Grant{
					rootGrant,
					{UID: 1002, User: "bob", Reasons: []string{"allowed group mailers"}},
					{UID: 1003, User: "carol", Reasons: []string{"allowed group mailers"}},
				},
			},
		},
		{
			name:   "group given by gid expands the same way",
			groups: []Principal{prGID3000},
			want: Resolution{
				UIDs: []uint32{0, 1004, 1005},
				Grants: []Grant{
					rootGrant,
					{UID: 1004, User: "dave", Reasons: []string{"allowed group 3000"}},
					{UID: 1005, User: "erin", Reasons: []string{"allowed group 3000"}},
				},
			},
		},
		{
			name:   "gid without a group entry still covers its primary members",
			groups: []Principal{prGID4000},
			want: Resolution{
				UIDs:   []uint32{0, 1006},
				Grants: []Grant{rootGrant, {UID: 1006, User: "frank", Reasons: []string{"allowed group 4000"}}},
			},
		},
		{
			name:   "gid nobody uses grants nothing",
			groups: []Principal{prGID5000},
			want:   Resolution{UIDs: []uint32{0}, Grants: []Grant{rootGrant}},
		},
		{
			name:  "deleted user is unresolved and not granted",
			users: []Principal{prGhostUser, prAlice},
			want: Resolution{
				UIDs:       []uint32{0, 1001},
				Grants:     []Grant{rootGrant, {UID: 1001, User: "alice", Reasons: []string{"allowed user alice"}}},
				Unresolved: []string{`allowed user "ghost" no longer exists`},
			},
		},
		{
			name: "deleted group is unresolved and its old gid not granted",
			// oldteam had gid 2000, now mailers': bob and carol must not inherit it.
			groups: []Principal{prOldTeam},
			want: Resolution{
				UIDs:       []uint32{0},
				Grants:     []Grant{rootGrant},
				Unresolved: []string{`allowed group "oldteam" no longer exists`},
			},
		},
		{
			name:   "uids sorted and unique",
			users:  []Principal{prDave, prUID4242, prAlice, prUID1002},
			groups: []Principal{prMailers, prGID3000},
			system: []SystemUser{sysExim},
			want: Resolution{
				UIDs: []uint32{0, 101, 1001, 1002, 1003, 1004, 1005, 4242},
				Grants: []Grant{
					rootGrant,
					{UID: 101, User: "Debian-exim", Reasons: []string{"MTA exim4"}},
					{UID: 1001, User: "alice", Reasons: []string{"allowed user alice"}},
					{UID: 1002, User: "bob", Reasons: []string{"allowed user 1002", "allowed group mailers"}},
					{UID: 1003, User: "carol", Reasons: []string{"allowed group mailers"}},
					{UID: 1004, User: "dave", Reasons: []string{"allowed user dave", "allowed group 3000"}},
					{UID: 1005, User: "erin", Reasons: []string{"allowed group 3000"}},
					{UID: 4242, Reasons: []string{"allowed user 4242"}},
				},
			},
		},
		{
			name:  "uid allowed by name and by number lists both reasons",
			users: []Principal{prAlice, prUID1001},
			want: Resolution{
				UIDs:   []uint32{0, 1001},
				Grants: []Grant{rootGrant, {UID: 1001, User: "alice", Reasons: []string{"allowed user alice", "allowed user 1001"}}},
			},
		},
		{
			name:  "root allowed explicitly keeps both reasons",
			users: []Principal{{Kind: KindUser, Name: "root"}},
			want: Resolution{
				UIDs:   []uint32{0},
				Grants: []Grant{{UID: 0, User: "root", Reasons: []string{"root", "allowed user root"}}},
			},
		},
		{
			name:   "the same reason is not repeated",
			users:  []Principal{prBob, prBob},
			groups: []Principal{prMailers, prMailers},
			want: Resolution{
				UIDs: []uint32{0, 1002, 1003},
				Grants: []Grant{
					rootGrant,
					{UID: 1002, User: "bob", Reasons: []string{"allowed user bob", "allowed group mailers"}},
					{UID: 1003, User: "carol", Reasons: []string{"allowed group mailers"}},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			p.Users, p.Groups = tt.users, tt.groups
			got := Resolve(p, dir, tt.system)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Resolve(users %v, groups %v) mismatch (-want +got):\n%s", tt.users, tt.groups, diff)
			}
			if !slices.IsSorted(got.UIDs) || len(slices.Compact(slices.Clone(got.UIDs))) != len(got.UIDs) {
				t.Errorf("Resolve().UIDs = %v, want sorted and unique", got.UIDs)
			}
			if len(got.Grants) != len(got.UIDs) {
				t.Fatalf("Resolve() has %d grants for %d uids, want one each", len(got.Grants), len(got.UIDs))
			}
			for i, g := range got.Grants {
				if g.UID != got.UIDs[i] || len(g.Reasons) == 0 {
					t.Errorf("Resolve().Grants[%d] = %+v, want uid %d with a reason", i, g, got.UIDs[i])
				}
			}
		})
	}
}

func TestResolveDoesNotEditThePolicy(t *testing.T) {
	dir := testDirectory(t)
	p := Default()
	p.Users = []Principal{prAlice, prGhostUser}
	p.Groups = []Principal{prMailers}
	want := p.Clone()
	Resolve(p, dir, []SystemUser{sysExim})
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("Resolve() changed its policy argument (-want +got):\n%s", diff)
	}
}

func TestCompile(t *testing.T) {
	p := Policy{Enabled: true, Backend: "nft", Mode: ModeLog, Ports: []uint16{25, 2525}, AllowLocal: false}
	r := Resolution{UIDs: []uint32{0, 101, 1001}}
	got := Compile(p, r)
	want := Ruleset{Mode: ModeLog, Ports: []uint16{25, 2525}, AllowLocal: false, UIDs: []uint32{0, 101, 1001}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Compile() mismatch (-want +got):\n%s", diff)
	}
	// A compiled ruleset is a value: later edits to the policy or resolution
	// must not change what the kernel is told.
	p.Ports[0] = 80
	r.UIDs[2] = 1002
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Compile() result changed after editing its inputs (-want +got):\n%s", diff)
	}
}

// compiledRuleset compiles a policy against testDirectory with the exim system user.
func compiledRuleset(t *testing.T, change func(*Policy)) Ruleset {
	t.Helper()
	p := Default()
	p.Users = []Principal{prAlice, prUID4242}
	p.Groups = []Principal{prMailers}
	change(&p)
	return Compile(p, Resolve(p, testDirectory(t), []SystemUser{sysExim}))
}

func TestRulesetTrace(t *testing.T) {
	reject := compiledRuleset(t, func(*Policy) {})
	noLocal := compiledRuleset(t, func(p *Policy) { p.AllowLocal = false })
	logMode := compiledRuleset(t, func(p *Policy) { p.Mode = ModeLog })
	redirectMode := compiledRuleset(t, func(p *Policy) { p.Mode = ModeRedirect })
	customPorts := compiledRuleset(t, func(p *Policy) { p.Ports = []uint16{2525} })
	legacyPorts := compiledRuleset(t, func(p *Policy) { p.Ports = LegacyPorts() })
	const dave = 1004 // ordinary user, not allowed
	tests := []struct {
		name string
		rs   Ruleset
		pkt  Packet
		want Verdict
	}{
		{name: "https for an ordinary user", rs: reject, pkt: Packet{UID: dave, DstPort: 443}, want: VerdictAccept},
		{name: "port 2525 is restricted by default", rs: reject, pkt: Packet{UID: dave, DstPort: 2525}, want: VerdictReject},
		{name: "allowed user to 2525", rs: reject, pkt: Packet{UID: 1001, DstPort: 2525}, want: VerdictAccept},
		{name: "an older policy's ports leave 2525 open", rs: legacyPorts, pkt: Packet{UID: dave, DstPort: 2525}, want: VerdictAccept},
		{name: "ordinary user to 25", rs: reject, pkt: Packet{UID: dave, DstPort: 25}, want: VerdictReject},
		{name: "ordinary user to 465", rs: reject, pkt: Packet{UID: dave, DstPort: 465}, want: VerdictReject},
		{name: "ordinary user to 587", rs: reject, pkt: Packet{UID: dave, DstPort: 587}, want: VerdictReject},
		{name: "uid with no account to 25", rs: reject, pkt: Packet{UID: 65534, DstPort: 25}, want: VerdictReject},
		{name: "root to 25", rs: reject, pkt: Packet{UID: 0, DstPort: 25}, want: VerdictAccept},
		{name: "MTA user to 25", rs: reject, pkt: Packet{UID: 101, DstPort: 25}, want: VerdictAccept},
		{name: "allowed user to 587", rs: reject, pkt: Packet{UID: 1001, DstPort: 587}, want: VerdictAccept},
		{name: "allowed uid without account to 465", rs: reject, pkt: Packet{UID: 4242, DstPort: 465}, want: VerdictAccept},
		{name: "primary group member to 25", rs: reject, pkt: Packet{UID: 1002, DstPort: 25}, want: VerdictAccept},
		{name: "supplementary group member to 25", rs: reject, pkt: Packet{UID: 1003, DstPort: 25}, want: VerdictAccept},
		{name: "local delivery with allow-local", rs: reject, pkt: Packet{UID: dave, DstPort: 25, DstLocal: true}, want: VerdictAccept},
		{name: "routing header through a local first segment", rs: reject, pkt: Packet{UID: dave, DstPort: 25, DstLocal: true, RoutingHeader: true}, want: VerdictReject},
		{name: "allowed user with a routing header", rs: reject, pkt: Packet{UID: 1001, DstPort: 25, DstLocal: true, RoutingHeader: true}, want: VerdictAccept},
		{name: "local delivery without allow-local", rs: noLocal, pkt: Packet{UID: dave, DstPort: 25, DstLocal: true}, want: VerdictReject},
		{name: "allowed user local without allow-local", rs: noLocal, pkt: Packet{UID: 1001, DstPort: 25, DstLocal: true}, want: VerdictAccept},
		{name: "remote without allow-local", rs: noLocal, pkt: Packet{UID: dave, DstPort: 25}, want: VerdictReject},
		{name: "log mode: ordinary user logged", rs: logMode, pkt: Packet{UID: dave, DstPort: 25}, want: VerdictLog},
		{name: "log mode: allowed user accepted", rs: logMode, pkt: Packet{UID: 1001, DstPort: 25}, want: VerdictAccept},
		{name: "redirect mode: ordinary user redirected", rs: redirectMode, pkt: Packet{UID: dave, DstPort: 587}, want: VerdictRedirect},
		{name: "redirect mode: allowed user never redirected", rs: redirectMode, pkt: Packet{UID: 1001, DstPort: 25}, want: VerdictAccept},
		{name: "redirect mode: non-SMTP untouched", rs: redirectMode, pkt: Packet{UID: dave, DstPort: 443}, want: VerdictAccept},
		{name: "log mode: other port accepted", rs: logMode, pkt: Packet{UID: dave, DstPort: 80}, want: VerdictAccept},
		{name: "log mode: local accepted", rs: logMode, pkt: Packet{UID: dave, DstPort: 25, DstLocal: true}, want: VerdictAccept},
		{name: "custom ports: 25 no longer restricted", rs: customPorts, pkt: Packet{UID: dave, DstPort: 25}, want: VerdictAccept},
		{name: "custom ports: 2525 restricted", rs: customPorts, pkt: Packet{UID: dave, DstPort: 2525}, want: VerdictReject},
		{name: "custom ports: allowed user to 2525", rs: customPorts, pkt: Packet{UID: 1001, DstPort: 2525}, want: VerdictAccept},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rs.Trace(tt.pkt); got != tt.want {
				t.Errorf("Trace(%+v) = %s, want %s", tt.pkt, got, tt.want)
			}
		})
	}
}

// TestTraceMatchesResolve checks, uid by uid, that exactly the resolved uids
// get through on every restricted port.
func TestTraceMatchesResolve(t *testing.T) {
	dir := testDirectory(t)
	p := Default()
	p.Users = []Principal{prAlice, prUID4242}
	p.Groups = []Principal{prGID3000}
	res := Resolve(p, dir, []SystemUser{sysExim})
	rs := Compile(p, res)
	for _, uid := range []uint32{0, 1, 38, 101, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 4242, 65534, 4294967294} {
		want := VerdictReject
		if slices.Contains(res.UIDs, uid) {
			want = VerdictAccept
		}
		for _, port := range p.Ports {
			if got := rs.Trace(Packet{UID: uid, DstPort: port}); got != want {
				t.Errorf("Trace(uid %d, port %d) = %s, want %s (allowed uids %v)", uid, port, got, want, res.UIDs)
			}
		}
	}
}
