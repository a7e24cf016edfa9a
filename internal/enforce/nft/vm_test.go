//go:build linux

package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// vm evaluates the expressions Apply sends to the kernel, for the handful of
// expressions our rules use, so the rules themselves (not their text) can be
// checked against policy.Ruleset.Trace without a kernel.
type vm struct {
	chains map[string][]ruleSpec
	sets   map[string][]nftables.SetElement
	fields map[string][]int // key field lengths per set, as in registers
}

func newVM(rs policy.Ruleset) *vm {
	_, ports, uids, _ := objects(rs)
	m := &vm{chains: map[string][]ruleSpec{}, sets: map[string][]nftables.SetElement{}, fields: map[string][]int{
		setPorts: {2}, setUIDs: {4}, setExc4: {4, 4, 4}, setExc6: {4, 16, 4},
	}}
	for _, r := range rules(rs, DefaultLogGroup, ports, uids) {
		m.chains[r.chain] = append(m.chains[r.chain], r)
	}
	for _, ds := range desiredSets(rs, ports, uids) {
		m.sets[ds.def.Name] = ds.want
		if _, ok := m.fields[ds.def.Name]; !ok {
			m.fields[ds.def.Name] = []int{4} // the uid sets of rate limits
		}
	}
	return m
}

// vmPacket is what our rules can look at: a TCP packet leaving this host.
type vmPacket struct {
	uid      uint32
	dst      netip.Addr // as on the wire: 4 bytes for IPv4
	dport    uint16
	tcpFlags byte
	local    bool // fib daddr type local
	rthdr    bool // IPv6 routing header present
	overRate bool // the uid's rate-limit bucket is empty
}

func (p vmPacket) network() []byte {
	if p.dst.Is4() {
		h := make([]byte, 20)
		a := p.dst.As4()
		copy(h[16:], a[:])
		return h
	}
	h := make([]byte, 40)
	a := p.dst.As16()
	copy(h[24:], a[:])
	return h
}

func (p vmPacket) transport() []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[2:], p.dport)
	h[13] = p.tcpFlags
	return h
}

// verdict runs the packet through the entry chain: what the kernel would do.
func (m *vm) verdict(rs policy.Ruleset, p vmPacket) (policy.Verdict, error) {
	logged := false
	v, err := m.chain(chainsFor(rs)[0].name, p, &logged, 0)
	switch {
	case err != nil:
		return "", err
	case v == policy.VerdictAccept && logged: // over its rate limit in log mode
		return policy.VerdictLog, nil
	case v != "":
		return v, nil
	case logged: // the base chain's policy is accept
		return policy.VerdictLog, nil
	}
	return policy.VerdictAccept, nil
}

// chain returns the terminal verdict, or "" when the chain ends without one.
func (m *vm) chain(name string, p vmPacket, logged *bool, depth int) (policy.Verdict, error) {
	if depth > 4 {
		return "", fmt.Errorf("jump loop at chain %s", name)
	}
	for _, r := range m.chains[name] {
		v, err := m.rule(r, p, logged, depth)
		if err != nil || v != "" {
			return v, err
		}
	}
	return "", nil
}

// reg returns register r's bytes (NFT_REG_1..4 are 16 bytes, NFT_REG32_xx 4).
func reg(regs []byte, r uint32) []byte {
	i := r * 4
	if r >= 8 {
		i = r - 8 + 4
	}
	return regs[i*4:]
}

func (m *vm) rule(r ruleSpec, p vmPacket, logged *bool, depth int) (policy.Verdict, error) {
	regs := make([]byte, 20*4)
	store := func(dst uint32, b []byte) {
		d := reg(regs, dst)
		clear(d[:(len(b)+3)/4*4]) // the kernel zeroes the last word
		copy(d, b)
	}
	for _, e := range r.exprs {
		switch e := e.(type) {
		case *expr.Meta:
			switch e.Key {
			case expr.MetaKeyL4PROTO:
				store(e.Register, []byte{unix.IPPROTO_TCP})
			case expr.MetaKeyNFPROTO:
				store(e.Register, []byte{map[bool]byte{true: unix.NFPROTO_IPV4, false: unix.NFPROTO_IPV6}[p.dst.Is4()]})
			case expr.MetaKeySKUID:
				store(e.Register, binary.NativeEndian.AppendUint32(nil, p.uid))
			default:
				return "", fmt.Errorf("rule %q: meta key %d not modelled", r.text, e.Key)
			}
		case *expr.Cmp:
			eq := bytes.Equal(reg(regs, e.Register)[:len(e.Data)], e.Data)
			if eq != (e.Op == expr.CmpOpEq) {
				if e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
					return "", fmt.Errorf("rule %q: cmp op %d not modelled", r.text, e.Op)
				}
				return "", nil
			}
		case *expr.Payload:
			h := p.transport()
			if e.Base == expr.PayloadBaseNetworkHeader {
				h = p.network()
			}
			store(e.DestRegister, h[e.Offset:e.Offset+e.Len])
		case *expr.Bitwise:
			src, out := reg(regs, e.SourceRegister), make([]byte, e.Len)
			for i := range out {
				out[i] = src[i]&e.Mask[i] ^ e.Xor[i]
			}
			store(e.DestRegister, out)
		case *expr.Byteorder:
			b := slices.Clone(reg(regs, e.SourceRegister)[:e.Len])
			if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 { // little-endian host
				for i := 0; i < len(b); i += int(e.Size) {
					slices.Reverse(b[i : i+int(e.Size)])
				}
			}
			store(e.DestRegister, b)
		case *expr.Lookup:
			if !m.lookup(e.SetName, reg(regs, e.SourceRegister)) != e.Invert {
				return "", nil
			}
		case *expr.Fib:
			t := uint32(unix.RTN_UNICAST)
			if p.local {
				t = unix.RTN_LOCAL
			}
			store(e.Register, binary.NativeEndian.AppendUint32(nil, t))
		case *expr.Exthdr:
			if p.dst.Is4() {
				return "", fmt.Errorf("rule %q: IPv6 extension header read from an IPv4 packet", r.text)
			}
			store(e.DestRegister, []byte{map[bool]byte{true: 1}[p.rthdr]})
		case *expr.Dynset:
			switch {
			case len(e.Exprs) == 1 && isCounter(e.Exprs[0]):
				// counts, matches always
			case len(e.Exprs) == 1 && isOverLimit(e.Exprs[0]):
				if !p.overRate {
					return "", nil
				}
			default:
				return "", fmt.Errorf("rule %q: dynset %v not modelled", r.text, e.Exprs)
			}
		case *expr.Counter:
		case *expr.Log:
			*logged = true
		case *expr.Reject:
			return policy.VerdictReject, nil
		case *expr.Immediate:
			store(e.Register, e.Data)
		case *expr.Redir:
			if e.RegisterProtoMin != 0 {
				return policy.VerdictExplain, nil // to the responder's port
			}
			return policy.VerdictRedirect, nil
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				return policy.VerdictAccept, nil
			case expr.VerdictJump:
				return m.chain(e.Chain, p, logged, depth+1)
			}
			return "", fmt.Errorf("rule %q: verdict %d not modelled", r.text, e.Kind)
		default:
			return "", fmt.Errorf("rule %q: expression %T not modelled", r.text, e)
		}
	}
	return "", nil
}

// lookup matches the key field by field: each field of an interval element
// lies between Key and KeyEnd, as the kernel's concatenated ranges do.
func (m *vm) lookup(set string, key []byte) bool {
	for _, el := range m.sets[set] {
		lo, hi := el.Key, el.KeyEnd
		if hi == nil {
			hi = lo
		}
		match, off := true, 0
		for _, n := range m.fields[set] {
			k := key[off : off+n]
			if bytes.Compare(k, lo[off:off+n]) < 0 || bytes.Compare(k, hi[off:off+n]) > 0 {
				match = false
				break
			}
			off += 4 * ((n + 3) / 4)
		}
		if match {
			return true
		}
	}
	return false
}

func isCounter(e expr.Any) bool { _, ok := e.(*expr.Counter); return ok }

func isOverLimit(e expr.Any) bool { l, ok := e.(*expr.Limit); return ok && l.Over }
