//go:build linux

package nft

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func canonical(t *testing.T, e expr.Any) string {
	t.Helper()
	b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
	if err != nil {
		t.Fatal(err)
	}
	c, err := canonicalExpr(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Only what the kernel reports differently may compare equal; every change of
// meaning must not.
func TestCanonicalExpr(t *testing.T) {
	tests := []struct {
		name  string
		a, b  expr.Any
		equal bool
	}{
		{"counter values", &expr.Counter{}, &expr.Counter{Bytes: 100, Packets: 2}, true},
		{"lookup set id", &expr.Lookup{SourceRegister: 1, SetName: "s", SetID: 7}, &expr.Lookup{SourceRegister: 1, SetName: "s"}, true},
		{"lookup inverted", &expr.Lookup{SourceRegister: 1, SetName: "s"}, &expr.Lookup{SourceRegister: 1, SetName: "s", Invert: true}, false},
		{"lookup other set", &expr.Lookup{SourceRegister: 1, SetName: "s"}, &expr.Lookup{SourceRegister: 1, SetName: "t"}, false},
		{"accept vs drop", &expr.Verdict{Kind: expr.VerdictAccept}, &expr.Verdict{Kind: expr.VerdictDrop}, false},
		{"jump target", &expr.Verdict{Kind: expr.VerdictJump, Chain: "a"}, &expr.Verdict{Kind: expr.VerdictJump, Chain: "b"}, false},
		{"cmp op", &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}}, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{6}}, false},
		{"cmp data", &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{17}}, false},
		{"meta key", &expr.Meta{Key: expr.MetaKeySKUID, Register: 1}, &expr.Meta{Key: expr.MetaKeySKGID, Register: 1}, false},
		{"reset's icmp code", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST, Code: 3}, true},
		{"icmp reject code", &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: 1}, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: 3}, false},
		{"reject type", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH}, false},
		{"log group", &expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: 1}, &expr.Log{Key: 1 << unix.NFTA_LOG_GROUP, Group: 2}, false},
		{"exthdr tcp option instead of ipv6 header", &expr.Exthdr{DestRegister: 1, Type: 43, Len: 1, Op: expr.ExthdrOpIpv6, Flags: unix.NFT_EXTHDR_F_PRESENT},
			&expr.Exthdr{DestRegister: 1, Type: 43, Len: 1, Op: expr.ExthdrOpTcpopt, Flags: unix.NFT_EXTHDR_F_PRESENT}, false},
		{"exthdr present flag", &expr.Exthdr{DestRegister: 1, Type: 43, Len: 1, Op: expr.ExthdrOpIpv6, Flags: unix.NFT_EXTHDR_F_PRESENT},
			&expr.Exthdr{DestRegister: 1, Type: 43, Len: 1, Op: expr.ExthdrOpIpv6}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := canonical(t, tt.a), canonical(t, tt.b)
			if (a == b) != tt.equal {
				t.Errorf("canonical forms %q and %q: equal = %v, want %v", a, b, a == b, tt.equal)
			}
		})
	}
}
