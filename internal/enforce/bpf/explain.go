package bpf

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// Explain mode (policy.ModeExplain): a refused connection to a plain-text
// port has its destination rewritten to the daemon's responder on loopback,
// and the destination it dialled is kept under the socket's cookie for the
// responder to read (ExplainedDestination); implicit TLS (465) is refused
// as in reject mode. This file holds all of it, apart from one jump in
// verdict and the helpers' place at the end of body4 and body6.

// modeExplain is explain mode's code in the config map and events.
const modeExplain = 3

const (
	// mapExplainPort holds the responder's port (u32, host order) at key 0;
	// 0 refuses, so a program never sends anyone to a port nobody chose.
	mapExplainPort = "sg_explain_port"
	// mapExplainDst maps a socket cookie (u64) to the destination it
	// dialled: the event's bytes from evFamily to the end of the address
	// (family, port, action, flags, address). LRU: a connection the
	// responder never reads (no daemon) ages out.
	mapExplainDst = "sg_explain_dst"

	explainDstSize = evAddr + 16 - evFamily
	// MaxExplained bounds the destinations kept at once.
	MaxExplained = 1 << 14
)

// explainMapSpecs declares the maps explain mode adds.
func explainMapSpecs() map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		mapExplainPort: {Name: mapExplainPort, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1},
		mapExplainDst:  {Name: mapExplainDst, Type: ebpf.LRUHash, KeySize: 8, ValueSize: explainDstSize, MaxEntries: MaxExplained},
	}
}

// explainPortValue is what mapExplainPort must hold for rs.
func explainPortValue(rs policy.Ruleset) uint32 {
	if rs.Mode != policy.ModeExplain {
		return 0
	}
	if rs.ExplainPort == 0 {
		return policy.DefaultExplainPort
	}
	return uint32(rs.ExplainPort)
}

// explainTail is where verdict sends an explain-mode attempt (label
// pfx+"explain"), once the event (with the destination) is on the stack:
// 465 is refused; otherwise the destination is remembered under the socket
// cookie, the port becomes the responder's and rewrite (which ends by
// jumping to allow) makes the address loopback. Anything missing (no port
// configured, the map full beyond LRU) refuses: failing closed.
func explainTail(pfx string, opts progOptions, rewrite asm.Instructions) asm.Instructions {
	refuse := pfx + "explain_refuse"
	insns := asm.Instructions{
		asm.JEq.Imm(asm.R8, policy.ImplicitTLSPort, refuse).WithSymbol(pfx + "explain"),
		asm.StoreImm(asm.RFP, stSmall, 0, asm.Word),
	}
	insns = append(insns, lookup(mapExplainPort, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, refuse),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, refuse),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.StoreMem(asm.RFP, stSmall, asm.R1, asm.Word), // the new user_port, past the calls
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, stExcKey, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapExplainDst),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stExcKey),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stEvent+evFamily),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.JNE.Imm(asm.R0, 0, refuse),
		asm.LoadMem(asm.R1, asm.RFP, stSmall, asm.Word),
		asm.StoreMem(asm.R6, ctxUserPort, asm.R1, asm.Word),
	)
	insns = append(insns, rewrite...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol(refuse))
	if opts.setRetval {
		insns = append(insns,
			asm.Mov.Imm(asm.R1, -errConnRefuse),
			asm.FnSetRetval.Call(),
			asm.Mov.Imm(asm.R0, 0),
		)
	}
	return append(insns, asm.Return())
}

// explain4 is explainTail for an IPv4 destination at addrOff: 127.0.0.1
// (::ffff:127.0.0.1 when mapped).
func explain4(pfx string, addrOff int16, opts progOptions) asm.Instructions {
	return explainTail(pfx, opts, asm.Instructions{
		asm.Mov.Imm32(asm.R1, int32(nativeU32(127, 0, 0, 1))),
		asm.StoreMem(asm.R6, addrOff, asm.R1, asm.Word),
		asm.Ja.Label("allow"),
	})
}

// explain6 is explainTail for a native IPv6 destination: ::1.
func explain6(pfx string, opts progOptions) asm.Instructions {
	return explainTail(pfx, opts, asm.Instructions{
		asm.StoreImm(asm.R6, ctxUserIP6, 0, asm.Word),
		asm.StoreImm(asm.R6, ctxUserIP6+4, 0, asm.Word),
		asm.StoreImm(asm.R6, ctxUserIP6+8, 0, asm.Word),
		asm.Mov.Imm32(asm.R1, int32(nativeU32(0, 0, 0, 1))),
		asm.StoreMem(asm.R6, ctxUserIP6+12, asm.R1, asm.Word),
		asm.Ja.Label("allow"),
	})
}

// renderExplain describes explain mode's maps for plan output.
func renderExplain(rs policy.Ruleset) string {
	if rs.Mode != policy.ModeExplain {
		return ""
	}
	return fmt.Sprintf("%s: port %d on 127.0.0.1 and ::1 (implicit TLS, port %d, refused); %s: destinations by socket cookie (LRU, %d)\n",
		mapExplainPort, explainPortValue(rs), policy.ImplicitTLSPort, mapExplainDst, MaxExplained)
}

// parseExplainDst decodes an mapExplainDst value.
func parseExplainDst(v []byte) (netip.AddrPort, error) {
	if len(v) != explainDstSize {
		return netip.AddrPort{}, fmt.Errorf("explained destination of %d bytes, want %d", len(v), explainDstSize)
	}
	port := nativeEndian.Uint16(v[evPort-evFamily:])
	addr := v[evAddr-evFamily:]
	switch nativeEndian.Uint32(v) {
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(addr[:4])), port), nil
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(addr)), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("explained destination of family %d", nativeEndian.Uint32(v))
}
