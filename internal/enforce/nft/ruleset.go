//go:build linux

package nft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Every object lives in one table that smtpguard owns entirely, so the names
// need no prefix; nothing outside this table is ever read or written.
const (
	tableName = "smtpguard"
	setPorts  = "smtp_ports"
	setUIDs   = "allowed_uids"
	// Scoped exceptions, uid . address . port with address intervals (CIDRs);
	// one set per family because the address lengths differ.
	setExc4 = "exceptions_v4"
	setExc6 = "exceptions_v6"
	// setAllowedCount counts allowed connections per uid: a dynamic set the
	// allowed chain adds each uid to, with a counter per element.
	setAllowedCount = "allowed_count"
	// chainAllowed is where allowed connections go (allowed uids and
	// exceptions alike): rate limits, then the count, then accept.
	chainAllowed = "allowed"
	// Filter chains (reject and log modes).
	chainOut   = "output"     // base chain on the output hook
	chainCheck = "smtp_check" // reached only by new connections to a restricted port
	// NAT chains (redirect mode).
	chainNATOut   = "nat_output"
	chainRedirect = "redirect_check"
	// commentPrefix marks our rules; the rest of the comment is a fingerprint
	// of the rule's text, so "nft list" shows which of our rules is which.
	// Verify compares the expressions themselves (exprs.go).
	commentPrefix = "smtpguard "
)

// TCP flag bits as in the TCP header's 14th byte.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// chainSpec declares one chain. Base chains have a hook.
type chainSpec struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	hookText string // nft syntax after "type"
}

// natOutputPriority is -100 ("dstnat"; nft accepts the keyword only on
// prerouting): destination NAT before the filter chains see the packet.
var natOutputPriority = nftables.ChainPriorityRef(-100)

// chainsFor is the hook topology for a mode. Reject and log filter on the
// output hook at the filter priority (a reject anywhere is final, whatever
// other tables accept). Redirect needs destination NAT instead, on the NAT
// output hook, which sees only a connection's first packet; no filter chain
// is installed then, so reject mode never loads NAT and redirect never rejects.
func chainsFor(rs policy.Ruleset) []chainSpec {
	if natMode(rs.Mode) {
		return []chainSpec{
			{name: chainNATOut, typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, priority: natOutputPriority, hookText: "nat hook output priority -100"},
			{name: chainRedirect},
			{name: chainAllowed},
		}
	}
	return []chainSpec{
		{name: chainOut, typ: nftables.ChainTypeFilter, hook: nftables.ChainHookOutput, priority: nftables.ChainPriorityFilter, hookText: "filter hook output priority filter"},
		{name: chainCheck},
		{name: chainAllowed},
	}
}

// ruleSpec is one rule in both forms: text for people (render) and netlink
// expressions for the kernel (Apply, and Verify's comparison).
type ruleSpec struct {
	chain string
	text  string
	exprs []expr.Any
}

func (r ruleSpec) comment() string {
	sum := sha256.Sum256([]byte(r.chain + "\x00" + r.text))
	return commentPrefix + hex.EncodeToString(sum[:4])
}

// rules declares the ruleset. Order matters and is the one policy.Ruleset.Trace
// follows:
//  1. only a new outgoing connection to a restricted port enters the check
//     chain; every other packet leaves at the first rule. The filter form
//     checks for a SYN without ACK, which also keeps socketless packets (an
//     RST the kernel sends for a late segment has no uid) away from the block
//     rule without conntrack; NAT chains see only new connections anyway.
//  2. local destinations (loopback and this host's addresses, via fib) pass
//     when allow-local is on, so local delivery through the MTA works; one
//     rule per family, because an IPv6 packet with a routing header is never
//     local (its first segment may be ours, its destination not).
//  3. allowed uids, and uids with an exception for this destination and
//     port, go to the allowed chain, by one set lookup each whatever the
//     sets' sizes. There a uid over its rate limit is refused as in 4 (one
//     rule per distinct rate: a set of the uids with that rate, and a
//     dynamic set holding a token bucket per uid); the rest are counted per
//     uid (a dynamic set with a counter per uid) and pass.
//  4. the rest is counted, sent to the netlink log group and, by mode:
//     rejected with a TCP reset, so connect() fails at once with ECONNREFUSED
//     (icmpx rejects cost a SYN retransmit, about 1s; drop hangs the client);
//     redirected to the same port on loopback, where the local MTA listens;
//     or let through (log).
func rules(rs policy.Ruleset, group uint16, ports, uids *nftables.Set) []ruleSpec {
	if ports == nil {
		ports = &nftables.Set{Name: setPorts}
	}
	if uids == nil {
		uids = &nftables.Set{Name: setUIDs}
	}
	entry, check := chainOut, chainCheck
	isTCP := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
	}
	gate := ruleSpec{
		chain: entry,
		text:  fmt.Sprintf("tcp flags & (fin | syn | rst | ack) == syn tcp dport @%s jump %s", setPorts, check),
		exprs: append(isTCP,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1,
				Mask: []byte{tcpFIN | tcpSYN | tcpRST | tcpACK}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		),
	}
	if natMode(rs.Mode) {
		entry, check = chainNATOut, chainRedirect
		gate = ruleSpec{chain: entry, text: fmt.Sprintf("meta l4proto tcp tcp dport @%s jump %s", setPorts, check), exprs: isTCP}
	}
	gate.exprs = append(gate.exprs,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: check},
	)
	out := []ruleSpec{gate}
	if rs.AllowLocal {
		isLocal := func() []expr.Any {
			return []expr.Any{
				&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
				&expr.Verdict{Kind: expr.VerdictAccept},
			}
		}
		// An IPv6 packet with a routing header carries this host's address
		// as its destination only until its first segment: the last one may
		// be a remote server (SRv6 forwarding), so it is not local.
		out = append(out,
			ruleSpec{
				chain: check,
				text:  "meta nfproto ipv4 fib daddr type local accept",
				exprs: append([]expr.Any{
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
				}, isLocal()...),
			},
			ruleSpec{
				chain: check,
				text:  "meta nfproto ipv6 exthdr rt missing fib daddr type local accept",
				exprs: append([]expr.Any{
					&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
					&expr.Exthdr{DestRegister: 1, Type: unix.IPPROTO_ROUTING, Len: 1, Op: expr.ExthdrOpIpv6, Flags: unix.NFT_EXTHDR_F_PRESENT},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
				}, isLocal()...),
			})
	}
	toAllowed := &expr.Verdict{Kind: expr.VerdictJump, Chain: chainAllowed}
	out = append(out, ruleSpec{
		chain: check,
		text:  fmt.Sprintf("meta skuid @%s jump %s", setUIDs, chainAllowed),
		exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: uids.Name, SetID: uids.ID},
			toAllowed,
		},
	})
	// Exceptions: uid . destination . port, one lookup per family whatever
	// the number of exceptions. Intervals in concatenated sets need the key
	// in network byte order, hence the byteorder on the uid.
	for _, fam := range []struct {
		set, name       string
		nfproto         byte
		offset, addrLen uint32
	}{{setExc4, "ip", unix.NFPROTO_IPV4, 16, 4}, {setExc6, "ip6", unix.NFPROTO_IPV6, 24, 16}} {
		out = append(out, ruleSpec{
			chain: check,
			text:  fmt.Sprintf("meta nfproto ipv%c meta skuid . %s daddr . tcp dport @%s jump %s", map[byte]rune{unix.NFPROTO_IPV4: '4', unix.NFPROTO_IPV6: '6'}[fam.nfproto], fam.name, fam.set, chainAllowed),
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam.nfproto}},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
				&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
				&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
				&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: fam.offset, Len: fam.addrLen},
				&expr.Payload{DestRegister: 9 + fam.addrLen/4, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: fam.set},
				toAllowed,
			},
		})
	}
	if rs.Mode == policy.ModeExplain {
		out = append(out, explainRules(rs, group, isTCP)...)
	} else {
		out = append(out, refusal(rs.Mode, check, "", nil, logPrefix(rs.Mode), group, isTCP))
	}
	for _, r := range rs.DistinctRates() {
		uidSet, meter := rateSetNames(r)
		unit, ok := limitUnit(r)
		if !ok {
			continue // policy.Validate admits no such rate
		}
		match := fmt.Sprintf("meta skuid @%s update @%s { meta skuid limit rate over %d/%s burst %d packets } ",
			uidSet, meter, r.Count, limitUnitName(unit), r.Count)
		// The uid's bucket: the rule matches only when it is empty.
		rule := refusal(rs.Mode, chainAllowed, match, []expr.Any{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: uidSet},
			// nft loads the key again for the update; so do we, so the
			// rendered text and these expressions stay the same rule.
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Dynset{SrcRegKey: 1, SetName: meter, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(r.Count), Over: true, Unit: unit, Burst: r.Count},
			}},
		}, rateLimitedPrefix, group, isTCP)
		out = append(out, rule)
	}
	// The count is a rule of its own: should the dynamic set ever refuse a
	// new element, the connection still passes.
	out = append(out,
		ruleSpec{
			chain: chainAllowed,
			text:  fmt.Sprintf("update @%s { meta skuid counter }", setAllowedCount),
			exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
				&expr.Dynset{SrcRegKey: 1, SetName: setAllowedCount, Operation: unix.NFT_DYNSET_OP_UPDATE, Exprs: []expr.Any{&expr.Counter{}}},
			},
		},
		ruleSpec{chain: chainAllowed, text: "accept", exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}},
	)
	return out
}

// rateLimitedPrefix is the log prefix of a connection over its rate limit.
const rateLimitedPrefix = "smtpguard rate-limited"

// refusal is the rule that refuses a connection as the mode says: count it,
// log it to the NFLOG group with prefix, then reject with a TCP reset
// (connect fails at once with ECONNREFUSED; icmpx rejects cost a SYN
// retransmit, about 1s; drop hangs the client), redirect to the same port on
// loopback, or let it through (log), after the match (text and expressions).
func refusal(mode policy.Mode, chain, matchText string, match []expr.Any, prefix string, group uint16, isTCP []expr.Any) ruleSpec {
	r := ruleSpec{chain: chain, text: matchText + fmt.Sprintf("counter log prefix %q group %d", prefix, group),
		exprs: append(slices.Clone(match), refusalTail(mode, prefix, group)...)}
	switch mode {
	case policy.ModeReject, policy.ModeExplain:
		// Explain mode refuses with refusal only connections over their
		// rate limit (explainRules answers the others): the responder's
		// "may not connect directly" would be wrong for them.
		r.text += " reject with tcp reset"
		// nft prefixes "reject with tcp reset" with its protocol dependency;
		// doing the same keeps our netlink form identical to the text form.
		r.exprs = append(slices.Clone(isTCP[:2]), r.exprs...)
	case policy.ModeRedirect:
		// Without a port, redirect keeps the destination port and picks
		// 127.0.0.1 or ::1 by family.
		r.text += " redirect"
	}
	return r
}

// refusalTail is refusal's expressions after the protocol dependency.
func refusalTail(mode policy.Mode, prefix string, group uint16) []expr.Any {
	out := []expr.Any{
		&expr.Counter{},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(prefix)},
	}
	switch mode {
	case policy.ModeReject, policy.ModeExplain:
		out = append(out, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case policy.ModeRedirect:
		out = append(out, &expr.Redir{})
	}
	return out
}

// rateSetNames names a distinct rate's sets: the uids limited to it, and the
// dynamic set of their buckets ("rate_5_per_m", "meter_5_per_m").
func rateSetNames(r policy.Rate) (uids, meter string) {
	suffix := strings.Replace(r.String(), "/", "_per_", 1)
	return "rate_" + suffix, "meter_" + suffix
}

// limitUnit is the nft limit unit of r's period.
func limitUnit(r policy.Rate) (expr.LimitTime, bool) {
	switch r.Period {
	case time.Second:
		return expr.LimitTimeSecond, true
	case time.Minute:
		return expr.LimitTimeMinute, true
	case time.Hour:
		return expr.LimitTimeHour, true
	case 24 * time.Hour:
		return expr.LimitTimeDay, true
	}
	return 0, false
}

func limitUnitName(u expr.LimitTime) string {
	return map[expr.LimitTime]string{expr.LimitTimeSecond: "second", expr.LimitTimeMinute: "minute",
		expr.LimitTimeHour: "hour", expr.LimitTimeDay: "day"}[u]
}

// rateSets are the sets of rs's distinct rates, with the uids of each.
func rateSets(rs policy.Ruleset, t *nftables.Table) []desiredSet {
	var out []desiredSet
	for _, r := range rs.DistinctRates() {
		uidSet, meter := rateSetNames(r)
		var uids []uint32
		for _, ur := range rs.RateLimits {
			if ur.Rate == r {
				uids = append(uids, ur.UID)
			}
		}
		out = append(out,
			desiredSet{&nftables.Set{Table: t, Name: uidSet, KeyType: nftables.TypeUID, KeyByteOrder: binaryutil.NativeEndian}, uidElements(uids)},
			desiredSet{dynamicSet(t, meter), nil})
	}
	return out
}

// dynamicSet is a set the packet path fills (buckets, counters): its elements
// are the kernel's, never compared or written by us. It has no size: a bound
// would leave uids past it unlimited and uncounted, and what fills it is
// bounded anyway (only uids in a rate set reach a meter, only allowed uids
// the count). A size hint would also cost vmalloc up front (about 0.5 MB per
// set at 2^20 elements, measured on 6.18), none without.
func dynamicSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeUID, KeyByteOrder: binaryutil.NativeEndian, Dynamic: true}
}

// natMode reports whether a mode rewrites destinations, on the NAT hook.
func natMode(m policy.Mode) bool { return m == policy.ModeRedirect || m == policy.ModeExplain }

// explainRules end the check chain in explain mode: implicit TLS (465) is
// refused with a reset as in reject mode (no certificate a client could
// trust can answer there), every other restricted port goes to the daemon's
// responder on 127.0.0.1 or ::1 (by family), which tells the client why in
// an SMTP reply. Without a daemon nothing listens there and the client is
// refused just the same. Both are logged, so the kernel's event counts each
// attempt whether or not the responder ever sees it.
func explainRules(rs policy.Ruleset, group uint16, isTCP []expr.Any) []ruleSpec {
	blocked, explained := logPrefix(policy.ModeReject), logPrefix(policy.ModeExplain)
	tls := ruleSpec{
		chain: chainRedirect,
		text:  fmt.Sprintf("tcp dport %d counter log prefix %q group %d reject with tcp reset", policy.ImplicitTLSPort, blocked, group),
		exprs: append(isTCP[:2:2],
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(policy.ImplicitTLSPort)},
			&expr.Counter{},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(blocked)},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		),
	}
	port := rs.ExplainPort
	if port == 0 {
		port = policy.DefaultExplainPort
	}
	redirect := ruleSpec{
		chain: chainRedirect,
		// A port mapping needs the protocol match first (nft refuses it
		// otherwise, and lists it so).
		text: fmt.Sprintf("meta l4proto tcp counter log prefix %q group %d redirect to :%d", explained, group, port),
		exprs: append(isTCP[:2:2],
			&expr.Counter{},
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(explained)},
			&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
			// The kernel sets PROTO_SPECIFIED itself and lists max = min:
			// written as it reads back, so Verify compares like with like.
			&expr.Redir{RegisterProtoMin: 1, RegisterProtoMax: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
		),
	}
	return []ruleSpec{tls, redirect}
}

// logPrefix tells the event reader what the kernel did with the attempt.
func logPrefix(m policy.Mode) string {
	switch m {
	case policy.ModeLog:
		return "smtpguard logged"
	case policy.ModeRedirect:
		return "smtpguard redirected"
	case policy.ModeExplain:
		return "smtpguard explained"
	}
	return "smtpguard blocked"
}

func portElements(ports []uint16) []nftables.SetElement {
	els := make([]nftables.SetElement, len(ports))
	for i, p := range ports {
		els[i] = nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)}
	}
	return els
}

// exceptionElements splits exceptions by family into interval elements
// uid . first address . port - uid . last address . port, each field padded
// to 4 bytes as the kernel's registers are.
func exceptionElements(rules []policy.ExceptionRule) (v4, v6 []nftables.SetElement) {
	for _, r := range rules {
		key := func(a netip.Addr) []byte {
			b := binaryutil.BigEndian.PutUint32(r.UID)
			b = append(b, a.AsSlice()...)
			return append(b, byte(r.Port>>8), byte(r.Port), 0, 0)
		}
		el := nftables.SetElement{Key: key(r.Dst.Masked().Addr()), KeyEnd: key(lastAddr(r.Dst))}
		if r.Dst.Addr().Is4() {
			v4 = append(v4, el)
		} else {
			v6 = append(v6, el)
		}
	}
	return v4, v6
}

// lastAddr is the highest address in a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func uidElements(uids []uint32) []nftables.SetElement {
	els := make([]nftables.SetElement, len(uids))
	keys := make([]byte, 4*len(uids)) // one allocation for 10,000 keys
	for i, u := range uids {
		// meta skuid loads the uid in host byte order.
		key := keys[4*i : 4*i+4 : 4*i+4]
		binary.NativeEndian.PutUint32(key, u)
		els[i] = nftables.SetElement{Key: key}
	}
	return els
}

// render prints the ruleset in nft syntax, loadable with "nft -f"; its block
// rule logs to NFLOG group group.
func render(rs policy.Ruleset, group uint16) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "table inet %s {\n", tableName)
	fmt.Fprintf(&sb, "\tset %s {\n\t\ttype inet_service\n", setPorts)
	writeElements(&sb, len(rs.Ports), func(i int) string { return strconv.Itoa(int(rs.Ports[i])) })
	sb.WriteString("\t}\n\n")
	fmt.Fprintf(&sb, "\tset %s {\n\t\ttype uid\n", setUIDs)
	writeElements(&sb, len(rs.UIDs), func(i int) string { return strconv.FormatUint(uint64(rs.UIDs[i]), 10) })
	sb.WriteString("\t}\n")
	for _, fam := range []struct {
		name, addrType string
		v4             bool
	}{{setExc4, "ipv4_addr", true}, {setExc6, "ipv6_addr", false}} {
		fmt.Fprintf(&sb, "\n\tset %s {\n\t\ttype uid . %s . inet_service\n\t\tflags interval\n", fam.name, fam.addrType)
		var els []string
		for _, r := range rs.Exceptions {
			if r.Dst.Addr().Is4() == fam.v4 {
				dst := r.Dst.String()
				if r.Dst.IsSingleIP() {
					dst = r.Dst.Addr().String()
				}
				els = append(els, fmt.Sprintf("%d . %s . %d", r.UID, dst, r.Port))
			}
		}
		writeElements(&sb, len(els), func(i int) string { return els[i] })
		sb.WriteString("\t}\n")
	}
	for _, ds := range rateSets(rs, nil) {
		fmt.Fprintf(&sb, "\n\tset %s {\n\t\ttype uid\n", ds.def.Name)
		if ds.def.Dynamic {
			sb.WriteString("\t\tflags dynamic\n")
		} else {
			uids := rateUIDs(rs, ds.def.Name)
			writeElements(&sb, len(uids), func(i int) string { return strconv.FormatUint(uint64(uids[i]), 10) })
		}
		sb.WriteString("\t}\n")
	}
	fmt.Fprintf(&sb, "\n\tset %s {\n\t\ttype uid\n\t\tflags dynamic\n\t}\n", setAllowedCount)
	specs := rules(rs, group, nil, nil)
	for _, c := range chainsFor(rs) {
		fmt.Fprintf(&sb, "\n\tchain %s {\n", c.name)
		if c.hook != nil {
			fmt.Fprintf(&sb, "\t\ttype %s; policy accept;\n", c.hookText)
		}
		for _, r := range specs {
			if r.chain == c.name {
				fmt.Fprintf(&sb, "\t\t%s comment %q\n", r.text, r.comment())
			}
		}
		sb.WriteString("\t}\n")
	}
	sb.WriteString("}\n")
	return sb.String()
}

// rateUIDs lists the uids of the rate set named set.
func rateUIDs(rs policy.Ruleset, set string) []uint32 {
	var out []uint32
	for _, ur := range rs.RateLimits {
		if name, _ := rateSetNames(ur.Rate); name == set {
			out = append(out, ur.UID)
		}
	}
	return out
}

func writeElements(sb *strings.Builder, n int, elem func(int) string) {
	if n == 0 {
		return
	}
	sb.WriteString("\t\telements = { ")
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(elem(i))
	}
	sb.WriteString(" }\n")
}
