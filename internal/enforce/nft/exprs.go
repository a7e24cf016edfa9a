//go:build linux

package nft

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Verify compares every rule expression by expression, in a canonical form of
// its netlink attributes: what we send (expr.Marshal) and what the kernel
// lists must be the same bytes, so replacing "accept" by "drop", a set lookup
// by an inverted one or adding any expression at all is drift.
//
// The kernel's rule dump is read here rather than through google/nftables,
// whose rule listing silently skips expressions it cannot parse (byteorder,
// socket, xfrm, osf, ...): a rule with an extra expression we never see would
// compare equal.

const (
	// attrTypeMask strips netlink's nested and byte-order flags from a type.
	attrTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	// Bitwise attributes newer than golang.org/x/sys knows (uapi
	// nf_tables.h): the operation, which kernels since 5.6 always report,
	// and the shift amount.
	nftaBitwiseOp   = 6
	nftaBitwiseData = 7
)

// kernelRule is one rule as the kernel lists it.
type kernelRule struct {
	comment string
	exprs   []string // canonical form of each expression
}

// userData carries the rule's comment.
func (r ruleSpec) userData() []byte {
	return userdata.AppendString(nil, userdata.TypeComment, r.comment())
}

// wantRule is the kernelRule the kernel should list for r.
func wantRule(r ruleSpec) (kernelRule, error) {
	out := kernelRule{comment: r.comment()}
	for _, e := range r.exprs {
		b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			return kernelRule{}, fmt.Errorf("marshal expression %T of rule %q: %w", e, r.text, err)
		}
		c, err := canonicalExpr(b)
		if err != nil {
			return kernelRule{}, fmt.Errorf("expression %T of rule %q: %w", e, r.text, err)
		}
		out.exprs = append(out.exprs, c)
	}
	return out, nil
}

func (r kernelRule) equal(o kernelRule) bool {
	return r.comment == o.comment && slices.Equal(r.exprs, o.exprs)
}

// nfMsgType is a message type of the nf_tables netlink subsystem.
func nfMsgType(msg int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msg)
}

// dumpRules lists the rules of one chain of table inet smtpguard, in order,
// over its own netlink socket (a dump only reads, so it needs no ownership).
func dumpRules(netnsFD int, chain string) ([]kernelRule, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, classify(fmt.Errorf("open netfilter netlink socket: %w", err))
	}
	defer nl.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: []byte(tableName + "\x00")},
		{Type: unix.NFTA_RULE_CHAIN, Data: []byte(chain + "\x00")},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nfMsgType(unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		// nfgenmsg: family, version, resource id.
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, classify(err)
	}
	var out []kernelRule
	for _, m := range msgs {
		if m.Header.Type != nfMsgType(unix.NFT_MSG_NEWRULE) || len(m.Data) < 4 {
			continue
		}
		r, err := parseRule(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("parse a rule of chain %s: %w", chain, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRule(data []byte) (kernelRule, error) {
	var r kernelRule
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return r, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_USERDATA:
			r.comment, _ = userdata.GetString(ad.Bytes(), userdata.TypeComment)
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					c, err := canonicalExpr(nad.Bytes())
					if err != nil {
						return err
					}
					r.exprs = append(r.exprs, c)
				}
				return nil
			})
		}
	}
	return r, ad.Err()
}

// canonicalExpr turns one expression (the attributes NFTA_EXPR_NAME and
// NFTA_EXPR_DATA) into text that is equal for equal meaning. It sorts the
// attributes, ignores netlink's nested and byte-order flags and padding (the
// kernel sets them differently from google/nftables), and normalises only
// what the kernel reports differently from what it was given:
//   - counter: the packet and byte counts change with traffic, so only the
//     expression's presence counts;
//   - lookup and dynset: the kernel names the set and forgets the
//     transaction's set id; a dynset's element expression is compared in
//     this same canonical form, and its absent timeout is zero;
//   - attributes whose absence means zero and which one side sends as zero
//     (lookup flags, bitwise op, exthdr op, reject's ICMP code of a TCP
//     reset) count only when they are not zero.
//
// Anything else, including attributes we never send, stays and must match.
func canonicalExpr(b []byte) (string, error) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return "", err
	}
	var name string
	var data []byte
	for _, a := range attrs {
		switch a.Type & attrTypeMask {
		case unix.NFTA_EXPR_NAME:
			name = string(bytes.TrimRight(a.Data, "\x00"))
		case unix.NFTA_EXPR_DATA:
			data = a.Data
		default:
			return "", fmt.Errorf("unexpected attribute %d in expression", a.Type)
		}
	}
	if name == "" {
		return "", errors.New("expression without a name")
	}
	if name == "counter" {
		return name, nil
	}
	attrs, err = netlink.UnmarshalAttributes(data)
	if err != nil {
		return "", fmt.Errorf("expression %s: %w", name, err)
	}
	tcpReset := name == "reject" && slices.ContainsFunc(attrs, func(a netlink.Attribute) bool {
		return a.Type&attrTypeMask == unix.NFTA_REJECT_TYPE && bytes.Equal(a.Data, []byte{0, 0, 0, unix.NFT_REJECT_TCP_RST})
	})
	fields := make([]string, 0, len(attrs))
	for _, a := range attrs {
		typ := a.Type & attrTypeMask
		zero := !slices.ContainsFunc(a.Data, func(c byte) bool { return c != 0 })
		switch {
		case name == "lookup" && typ == unix.NFTA_LOOKUP_SET_ID,
			name == "dynset" && typ == unix.NFTA_DYNSET_SET_ID,
			name == "dynset" && typ == unix.NFTA_DYNSET_TIMEOUT && zero,
			name == "limit" && typ == unix.NFTA_LIMIT_PAD,
			name == "lookup" && typ == unix.NFTA_LOOKUP_FLAGS && zero,
			name == "bitwise" && typ == nftaBitwiseOp && zero,
			name == "exthdr" && typ == unix.NFTA_EXTHDR_OP && zero, // 0 (IPv6) is the default when absent
			tcpReset && typ == unix.NFTA_REJECT_ICMP_CODE:
			continue
		}
		if name == "dynset" && typ == unix.NFTA_DYNSET_EXPR {
			// The bucket or counter every element of the set gets.
			v, err := canonicalExpr(a.Data)
			if err != nil {
				return "", fmt.Errorf("expression %s, attribute %d: %w", name, typ, err)
			}
			fields = append(fields, fmt.Sprintf("%d=[%s]", typ, v))
			continue
		}
		if dataAttr(name, typ) {
			v, err := canonicalData(a.Data)
			if err != nil {
				return "", fmt.Errorf("expression %s, attribute %d: %w", name, typ, err)
			}
			fields = append(fields, fmt.Sprintf("%d=%s", typ, v))
			continue
		}
		fields = append(fields, fmt.Sprintf("%d=%x", typ, a.Data))
	}
	slices.Sort(fields)
	return name + "{" + strings.Join(fields, " ") + "}", nil
}

// dataAttr reports whether an expression's attribute holds nft_data (a value
// or a verdict), nested without NLA_F_NESTED in the kernel's dumps.
func dataAttr(name string, typ uint16) bool {
	switch name {
	case "cmp":
		return typ == unix.NFTA_CMP_DATA
	case "immediate":
		return typ == unix.NFTA_IMMEDIATE_DATA
	case "bitwise":
		return typ == unix.NFTA_BITWISE_MASK || typ == unix.NFTA_BITWISE_XOR || typ == nftaBitwiseData
	case "range":
		return typ == unix.NFTA_RANGE_FROM_DATA || typ == unix.NFTA_RANGE_TO_DATA
	}
	return false
}

// canonicalData renders nft_data: NFTA_DATA_VALUE as hex, NFTA_DATA_VERDICT as
// its code and chain.
func canonicalData(b []byte) (string, error) {
	attrs, err := netlink.UnmarshalAttributes(b)
	if err != nil {
		return "", err
	}
	var out []string
	for _, a := range attrs {
		typ := a.Type & attrTypeMask
		if typ != unix.NFTA_DATA_VERDICT {
			out = append(out, fmt.Sprintf("%d=%x", typ, a.Data))
			continue
		}
		inner, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return "", err
		}
		var v []string
		for _, i := range inner {
			v = append(v, fmt.Sprintf("%d=%x", i.Type&attrTypeMask, i.Data))
		}
		slices.Sort(v)
		out = append(out, fmt.Sprintf("%d=(%s)", typ, strings.Join(v, " ")))
	}
	slices.Sort(out)
	return "(" + strings.Join(out, " ") + ")", nil
}

// tableDormant reports whether the table's flags switch all its chains off.
func tableDormant(t *nftables.Table) bool { return t.Flags&nftables.TableFlagDormant != 0 }
