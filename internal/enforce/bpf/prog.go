package bpf

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Program and map names. The kernel keeps 15 characters of each; every name
// starts with sg_ so bpftool shows whose they are.
const (
	progConnect4 = "sg_connect4"
	progConnect6 = "sg_connect6"

	mapUIDs   = "sg_allowed_uids"
	mapPorts  = "sg_ports"
	mapExc4   = "sg_exc4"
	mapExc6   = "sg_exc6"
	mapLocal4 = "sg_local4"
	mapLocal6 = "sg_local6"
	mapConfig = "sg_config"
	mapDrops  = "sg_drops"
	mapEvents = "sg_events"
)

// Offsets into struct bpf_sock_addr (include/uapi/linux/bpf.h), the context
// of cgroup/connect4 and cgroup/connect6 programs.
const (
	ctxUserIP4  = 4  // __u32, network byte order
	ctxUserIP6  = 8  // __u32[4], network byte order
	ctxUserPort = 24 // __u32 whose first two bytes are the port, network byte order
	ctxType     = 32 // __u32 socket type
	ctxProtocol = 36 // __u32 socket protocol
)

// Socket types and protocols the programs restrict: stream sockets speaking
// TCP or MPTCP. UDP connect() runs the hook too and must pass.
const (
	sockStream    = 1   // SOCK_STREAM
	protoTCP      = 6   // IPPROTO_TCP
	protoMPTCP    = 262 // IPPROTO_MPTCP
	errConnRefuse = 111 // ECONNREFUSED
)

// Stack layout (offsets from the frame pointer R10). The verifier wants
// aligned stack accesses, which is why the exception key's port is 32 bits.
const (
	stEvent    = -eventSize // the event, built only when reporting
	stExcKey   = -112       // exception LPM key, up to 28 bytes
	stLocalKey = -144       // local address LPM key, up to 20 bytes
	stSmall    = -152       // a u32 key (port, uid, 0)
)

// progOptions are the kernel-dependent choices in the programs.
type progOptions struct {
	// setRetval: bpf_set_retval works in cgroup/connect programs, so a
	// refusal fails with ECONNREFUSED instead of EPERM.
	setRetval bool
	// nsPid: bpf_get_ns_current_pid_tgid works in cgroup/connect programs
	// (Linux 6.10), so events can carry the pids of the reader's pid
	// namespace (sg_pidns, pidns.go).
	nsPid bool
}

// connectProgram builds sg_connect4 or sg_connect6. The rule order is
// policy.Ruleset.Trace's:
//  1. only TCP (or MPTCP) stream sockets to a restricted port go on;
//  2. with allow-local, local destinations (loopback, this host's addresses)
//     pass;
//  3. allowed uids (the real uid of the task calling connect) pass;
//  4. exceptions (uid, destination prefix, port) pass;
//     what steps 3 and 4 let through passes only within the uid's rate
//     limit, if it has one (rateCheck), and is counted; over the limit it
//     is reported and refused as in step 5;
//  5. the rest is reported to the ring buffer and, by mode, refused
//     (ECONNREFUSED where bpf_set_retval works, else EPERM), redirected to
//     loopback on the same port, or let through (log).
//
// IPv4-mapped IPv6 destinations (::ffff:a.b.c.d on an AF_INET6 socket) only
// run connect6; they take the IPv4 path there, with the IPv4 maps.
func connectProgram(family int, opts progOptions) *ebpf.ProgramSpec {
	var insns asm.Instructions
	insns = append(insns,
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, ctxType, asm.Word),
		asm.JNE.Imm(asm.R1, sockStream, "allow"),
		asm.LoadMem(asm.R1, asm.R6, ctxProtocol, asm.Word),
		asm.JEq.Imm(asm.R1, protoTCP, "tcp"),
		asm.JNE.Imm(asm.R1, protoMPTCP, "allow"),
		// Port in host order into R8; is it restricted?
		asm.LoadMem(asm.R8, asm.R6, ctxUserPort, asm.Word).WithSymbol("tcp"),
		asm.HostTo(asm.BE, asm.R8, asm.Half),
		asm.StoreMem(asm.RFP, stSmall, asm.R8, asm.Word),
	)
	insns = append(insns, lookup(mapPorts, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "allow"),
		// Config: R9 = mode; allow-local decides whether step 2 runs.
		asm.StoreImm(asm.RFP, stSmall, 0, asm.Word),
	)
	insns = append(insns, lookup(mapConfig, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, "refuse_unconfigured"),
		asm.LoadMem(asm.R9, asm.R0, 0, asm.Word),
		asm.LoadMem(asm.R1, asm.R0, 4, asm.Word),
		asm.StoreMem(asm.RFP, stSmall, asm.R1, asm.Word), // allow-local, read by each body
	)
	if family == 4 {
		insns = append(insns, body4("v4_", ctxUserIP4, false, opts)...)
	} else {
		// ::ffff:0:0/96 is the IPv4-mapped prefix: words 0 and 1 zero, word 2
		// 0x0000ffff in network order (0xffff0000 loaded little-endian).
		insns = append(insns,
			asm.LoadMem(asm.R1, asm.R6, ctxUserIP6, asm.Word),
			asm.JNE.Imm(asm.R1, 0, "v6_body"),
			asm.LoadMem(asm.R1, asm.R6, ctxUserIP6+4, asm.Word),
			asm.JNE.Imm(asm.R1, 0, "v6_body"),
			asm.LoadMem(asm.R1, asm.R6, ctxUserIP6+8, asm.Word),
			asm.JNE.Imm32(asm.R1, int32(nativeU32(0, 0, 0xff, 0xff)), "v6_body"),
		)
		insns = append(insns, body4("m_", ctxUserIP6+12, true, opts)...)
		insns = append(insns, body6("v6_", opts)...)
	}
	insns = append(insns,
		// A config array lookup cannot fail; if it ever does, fail closed.
		asm.Mov.Imm(asm.R0, 0).WithSymbol("refuse_unconfigured"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	)
	name := progConnect4
	attach := ebpf.AttachCGroupInet4Connect
	if family == 6 {
		name, attach = progConnect6, ebpf.AttachCGroupInet6Connect
	}
	return &ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.CGroupSockAddr,
		AttachType:   attach,
		Instructions: resolveJumps(insns),
		License:      "GPL", // bpf_get_current_comm and friends are GPL-only
	}
}

// lookup calls bpf_map_lookup_elem(map, fp+keyOff); the value pointer (or
// NULL) lands in R0.
func lookup(m string, keyOff int16) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(m),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(keyOff)),
		asm.FnMapLookupElem.Call(),
	}
}

// body4 is steps 2 to 5 for an IPv4 destination read from the context at
// addrOff (user_ip4, or the last word of a mapped user_ip6). Labels get pfx.
func body4(pfx string, addrOff int16, mapped bool, opts progOptions) asm.Instructions {
	var insns asm.Instructions
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, stSmall, asm.Word).WithSymbol(pfx+"body"),
		asm.JEq.Imm(asm.R1, 0, pfx+"uid"),
		asm.StoreImm(asm.RFP, stLocalKey, 32, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, addrOff, asm.Word),
		asm.StoreMem(asm.RFP, stLocalKey+4, asm.R1, asm.Word),
	)
	insns = append(insns, lookup(mapLocal4, stLocalKey)...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, "allow"))
	insns = append(insns, uidCheck(pfx)...)
	insns = append(insns,
		asm.StoreImm(asm.RFP, stExcKey, excFixedBits+32, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stExcKey+4, asm.R1, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stExcKey+8, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R6, addrOff, asm.Word),
		asm.StoreMem(asm.RFP, stExcKey+12, asm.R1, asm.Word),
	)
	insns = append(insns, lookup(mapExc4, stExcKey)...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, pfx+"allowed"))
	// Report: the address goes in the event's first address word.
	var flags int64
	if mapped {
		flags = eventFlagMapped
	}
	insns = append(insns, reportStart(pfx, eventPrologue(pfx, 4, flags, opts))...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R6, addrOff, asm.Word),
		asm.StoreMem(asm.RFP, stEvent+evAddr, asm.R1, asm.Word),
	)
	insns = append(insns, eventSubmit(pfx)...)
	insns = append(insns, verdict(pfx, opts)...)
	// Redirect: 127.0.0.1 (::ffff:127.0.0.1 when mapped), same port.
	insns = append(insns,
		asm.Mov.Imm32(asm.R1, int32(nativeU32(127, 0, 0, 1))).WithSymbol(pfx+"redirect"),
		asm.StoreMem(asm.R6, addrOff, asm.R1, asm.Word),
		asm.Ja.Label("allow"),
	)
	insns = append(insns, rateCheck(pfx)...)
	return append(insns, explain4(pfx, addrOff, opts)...)
}

// body6 is steps 2 to 5 for a native IPv6 destination.
func body6(pfx string, opts progOptions) asm.Instructions {
	var insns asm.Instructions
	copyAddr := func(dstOff int16) asm.Instructions {
		var c asm.Instructions
		for i := int16(0); i < 4; i++ {
			c = append(c,
				asm.LoadMem(asm.R1, asm.R6, ctxUserIP6+4*i, asm.Word),
				asm.StoreMem(asm.RFP, dstOff+4*i, asm.R1, asm.Word),
			)
		}
		return c
	}
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, stSmall, asm.Word).WithSymbol(pfx+"body"),
		asm.JEq.Imm(asm.R1, 0, pfx+"uid"),
		asm.StoreImm(asm.RFP, stLocalKey, 128, asm.Word),
	)
	insns = append(insns, copyAddr(stLocalKey+4)...)
	insns = append(insns, lookup(mapLocal6, stLocalKey)...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, "allow"))
	insns = append(insns, uidCheck(pfx)...)
	insns = append(insns,
		asm.StoreImm(asm.RFP, stExcKey, excFixedBits+128, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stExcKey+4, asm.R1, asm.Word),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.RFP, stExcKey+8, asm.R1, asm.Word),
	)
	insns = append(insns, copyAddr(stExcKey+12)...)
	insns = append(insns, lookup(mapExc6, stExcKey)...)
	insns = append(insns, asm.JNE.Imm(asm.R0, 0, pfx+"allowed"))
	insns = append(insns, reportStart(pfx, eventPrologue(pfx, 6, 0, opts))...)
	insns = append(insns, copyAddr(stEvent+evAddr)...)
	insns = append(insns, eventSubmit(pfx)...)
	insns = append(insns, verdict(pfx, opts)...)
	// Redirect: ::1, same port.
	insns = append(insns,
		asm.StoreImm(asm.R6, ctxUserIP6, 0, asm.Word).WithSymbol(pfx+"redirect"),
		asm.StoreImm(asm.R6, ctxUserIP6+4, 0, asm.Word),
		asm.StoreImm(asm.R6, ctxUserIP6+8, 0, asm.Word),
		asm.Mov.Imm32(asm.R1, int32(nativeU32(0, 0, 0, 1))),
		asm.StoreMem(asm.R6, ctxUserIP6+12, asm.R1, asm.Word),
		asm.Ja.Label("allow"),
	)
	insns = append(insns, rateCheck(pfx)...)
	return append(insns, explain6(pfx, opts)...)
}

// uidCheck (step 3) puts the calling task's real uid in R7 and sends allowed
// uids on to their rate check (pfx+"allowed"). Real, not effective: a setuid drop before connect() counts
// as the user it dropped to, whoever created the socket.
func uidCheck(pfx string) asm.Instructions {
	insns := asm.Instructions{
		asm.FnGetCurrentUidGid.Call().WithSymbol(pfx + "uid"),
		asm.Mov.Reg32(asm.R7, asm.R0),
		asm.StoreMem(asm.RFP, stSmall, asm.R7, asm.Word),
	}
	insns = append(insns, lookup(mapUIDs, stSmall)...)
	return append(insns, asm.JNE.Imm(asm.R0, 0, pfx+"allowed"))
}

// eventPrologue zeroes the event on the stack and fills in everything but
// the address.
func eventPrologue(pfx string, family int32, flags int64, opts progOptions) asm.Instructions {
	insns := asm.Instructions{asm.Mov.Imm(asm.R1, 0)}
	for off := int16(0); off < eventSize; off += 8 {
		insns = append(insns, asm.StoreMem(asm.RFP, stEvent+off, asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.FnKtimeGetBootNs.Call(),
		asm.StoreMem(asm.RFP, stEvent+evBootNs, asm.R0, asm.DWord),
	)
	insns = append(insns, pidTgid(pfx, opts)...)
	insns = append(insns,
		asm.FnGetCurrentUidGid.Call().WithSymbol(pfx+"pid_done"),
		asm.StoreMem(asm.RFP, stEvent+evUIDGID, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, stEvent+evSockCookie, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetNetnsCookie.Call(),
		asm.StoreMem(asm.RFP, stEvent+evNetnsCookie, asm.R0, asm.DWord),
		asm.StoreImm(asm.RFP, stEvent+evFamily, int64(family), asm.Word),
		asm.StoreMem(asm.RFP, stEvent+evPort, asm.R8, asm.Half),
		asm.StoreMem(asm.RFP, stEvent+evAction, asm.R9, asm.Byte),
		asm.StoreImm(asm.RFP, stEvent+evFlags, flags, asm.Byte),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stEvent+evComm),
		asm.Mov.Imm(asm.R2, commLen),
		asm.FnGetCurrentComm.Call(),
	)
	return insns
}

// pidTgid writes the event's tgid<<32 | pid, then goes on at
// pfx+"pid_done". With sg_pidns naming a namespace, the numbers are that
// namespace's: struct bpf_pidns_info {u32 pid; u32 tgid;} has the layout of
// bpf_get_current_pid_tgid's u64, and the kernel zeroes it for a task whose
// pid namespace is another one (pid 0: unknown, never a wrong process).
// Else, or on kernels without the helper, they are the initial namespace's.
func pidTgid(pfx string, opts progOptions) asm.Instructions {
	host := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call().WithSymbol(pfx + "pid_host"),
		asm.StoreMem(asm.RFP, stEvent+evPidTgid, asm.R0, asm.DWord),
	}
	if !opts.nsPid {
		return host
	}
	// stSmall is free here: the rate check is done with the uid, and
	// eventSubmit and the explain tail write their own keys.
	insns := asm.Instructions{asm.StoreImm(asm.RFP, stSmall, 0, asm.Word)}
	insns = append(insns, lookup(mapPidNS, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, pfx+"pid_host"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), // dev
		asm.LoadMem(asm.R2, asm.R0, 8, asm.DWord), // inode
		asm.JEq.Imm(asm.R2, 0, pfx+"pid_host"),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stEvent+evPidTgid),
		asm.Mov.Imm(asm.R4, 8),
		asm.FnGetNsCurrentPidTgid.Call(),
		asm.Ja.Label(pfx+"pid_done"),
	)
	return append(insns, host...)
}

// eventSubmit copies the event into the ring buffer; when it is full the
// per-CPU drop counter goes up instead (the connect never waits for us).
func eventSubmit(pfx string) asm.Instructions {
	insns := asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapEvents),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stEvent),
		asm.Mov.Imm(asm.R3, eventSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, pfx+"submitted"),
		asm.StoreImm(asm.RFP, stSmall, 0, asm.Word),
	}
	insns = append(insns, lookup(mapDrops, stSmall)...)
	insns = append(insns,
		asm.JEq.Imm(asm.R0, 0, pfx+"submitted"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		// A no-op jump target: the label must sit on an instruction.
		asm.Mov.Reg(asm.R0, asm.R0).WithSymbol(pfx+"submitted"),
	)
	return insns
}

// verdict ends a refused attempt by mode (R9): log lets it through, redirect
// jumps to the body's rewrite, reject fails connect().
func verdict(pfx string, opts progOptions) asm.Instructions {
	insns := asm.Instructions{
		asm.JEq.Imm(asm.R9, int32(modeLog), "allow"),
		asm.JEq.Imm(asm.R9, int32(modeRedirect), pfx+"redirect"),
		asm.JNE.Imm(asm.R9, int32(modeExplain), pfx+"refuse"),
		// Explain mode answers blocked connections (explain.go); one over
		// its rate limit is refused as in reject, as nft does: "may not
		// connect directly" would be wrong for it.
		asm.LoadMem(asm.R1, asm.RFP, stEvent+evFlags, asm.Byte),
		asm.And.Imm(asm.R1, eventFlagRateLimited),
		asm.JEq.Imm(asm.R1, 0, pfx+"explain"),
	}
	refuse := asm.Instructions{}
	if opts.setRetval {
		refuse = append(refuse,
			asm.Mov.Imm(asm.R1, -errConnRefuse),
			asm.FnSetRetval.Call(),
		)
	}
	refuse = append(refuse,
		asm.Mov.Imm(asm.R0, 0), // 0 refuses: EPERM unless set_retval chose otherwise
		asm.Return(),
	)
	refuse[0] = refuse[0].WithSymbol(pfx + "refuse")
	return append(insns, refuse...)
}

// nativeU32 is the value a little- or big-endian load of the four bytes
// gives on this machine, for comparing context words with constants.
func nativeU32(b0, b1, b2, b3 byte) uint32 {
	return nativeEndian.Uint32([]byte{b0, b1, b2, b3})
}

// resolveJumps fills in the offsets of jumps to labels, which the loader
// would otherwise do on a copy: the spec's instructions then hash to the tag
// the kernel reports, so Verify can tell our programs from others.
func resolveJumps(insns asm.Instructions) asm.Instructions {
	pos := make([]int, len(insns))
	sym := map[string]int{}
	raw := 0
	for i, ins := range insns {
		pos[i] = raw
		if s := ins.Symbol(); s != "" {
			sym[s] = raw
		}
		raw += int(ins.Size() / asm.InstructionSize)
	}
	for i, ins := range insns {
		op := ins.OpCode.JumpOp()
		if op == asm.InvalidJumpOp || op == asm.Call || op == asm.Exit || ins.Reference() == "" {
			continue
		}
		if target, ok := sym[ins.Reference()]; ok {
			insns[i].Offset = int16(target - pos[i] - 1)
		}
	}
	return insns
}
