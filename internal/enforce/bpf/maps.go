package bpf

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/smtpguard/smtpguard/internal/policy"
)

var nativeEndian = binary.NativeEndian

// Mode codes in the config map (and the action byte of an event).
const (
	modeReject   = 0
	modeRedirect = 1
	modeLog      = 2
)

// Sizes of the maps. MaxAllowedUIDs bounds Ruleset.UIDs, MaxExceptions the
// exception rules of each family.
const (
	MaxAllowedUIDs  = 1 << 17
	MaxPorts        = 1 << 16
	MaxExceptions   = 1 << 16
	MaxLocalAddrs   = 1 << 12
	DefaultRingSize = 1 << 20 // 1 MiB: 256 KiB overflowed in 65 ms under one looping process
)

// excFixedBits counts the exception key bits before the address: the uid
// (32) and the port (32, the upper 16 always zero, so the address stays
// aligned on the program's stack).
const excFixedBits = 64

// The event the programs write to the ring buffer, byte offsets.
const (
	evBootNs      = 0  // u64 CLOCK_BOOTTIME ns
	evPidTgid     = 8  // u64 tgid<<32 | pid
	evUIDGID      = 16 // u64 gid<<32 | uid
	evSockCookie  = 24 // u64
	evNetnsCookie = 32 // u64
	evFamily      = 40 // u32 4 or 6
	evPort        = 44 // u16 host order
	evAction      = 46 // u8 mode code
	evFlags       = 47 // u8 eventFlag*
	evAddr        = 48 // [16]byte, IPv4 in the first 4
	evComm        = 64 // [16]byte
	commLen       = 16
	eventSize     = 80

	eventFlagMapped = 1 // an IPv4-mapped IPv6 destination on an AF_INET6 socket
)

// mapSpecs declares every map. Sets have a one-byte value of 1.
func mapSpecs(ringSize uint32) map[string]*ebpf.MapSpec {
	set := func(name string, typ ebpf.MapType, keySize, max uint32) *ebpf.MapSpec {
		return &ebpf.MapSpec{Name: name, Type: typ, KeySize: keySize, ValueSize: 1, MaxEntries: max, Flags: flagNoPrealloc}
	}
	specs := map[string]*ebpf.MapSpec{
		mapUIDs:   set(mapUIDs, ebpf.Hash, 4, MaxAllowedUIDs),
		mapPorts:  set(mapPorts, ebpf.Hash, 4, MaxPorts),
		mapExc4:   set(mapExc4, ebpf.LPMTrie, 4+4+4+4, MaxExceptions),
		mapExc6:   set(mapExc6, ebpf.LPMTrie, 4+4+4+16, MaxExceptions),
		mapLocal4: set(mapLocal4, ebpf.LPMTrie, 4+4, MaxLocalAddrs),
		mapLocal6: set(mapLocal6, ebpf.LPMTrie, 4+16, MaxLocalAddrs),
		mapConfig: {Name: mapConfig, Type: ebpf.Array, KeySize: 4, ValueSize: configSize, MaxEntries: 1},
		mapDrops:  {Name: mapDrops, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		mapEvents: {Name: mapEvents, Type: ebpf.RingBuf, MaxEntries: ringSize},
	}
	maps.Copy(specs, rateMapSpecs())
	maps.Copy(specs, explainMapSpecs())
	maps.Copy(specs, syncMapSpecs())
	maps.Copy(specs, pidNSMapSpecs())
	return specs
}

// flagNoPrealloc is BPF_F_NO_PREALLOC: LPM tries require it, and the hash
// sets stay small when the policy is.
const flagNoPrealloc = 1

// configSize: u32 mode, u32 allow-local.
const configSize = 8

// setMaps are the maps holding sets, in the order Apply fills them.
var setMaps = []string{mapPorts, mapUIDs, mapExc4, mapExc6, mapLocal4, mapLocal6}

// contents is what the set maps and the config hold, keys as strings of
// their bytes.
type contents struct {
	sets   map[string]map[string]bool
	config [configSize]byte
	rates  map[string]string // sg_rates: key → value bytes
}

func newContents() contents {
	c := contents{sets: map[string]map[string]bool{}, rates: map[string]string{}}
	for _, m := range setMaps {
		c.sets[m] = map[string]bool{}
	}
	return c
}

// encode is what the maps must hold to enforce rs, with local the host's
// own addresses (loopback and the unspecified addresses are always added).
func encode(rs policy.Ruleset, local []netip.Prefix) (contents, error) {
	c := newContents()
	if len(rs.UIDs) > MaxAllowedUIDs {
		return c, fmt.Errorf("%d allowed uids: the bpf backend holds at most %d", len(rs.UIDs), MaxAllowedUIDs)
	}
	for _, p := range rs.Ports {
		c.sets[mapPorts][string(u32Key(uint32(p)))] = true
	}
	c.sets[mapUIDs] = make(map[string]bool, len(rs.UIDs)) // 10,000 uids: no rehashing
	for _, u := range rs.UIDs {
		c.sets[mapUIDs][string(u32Key(u))] = true
	}
	for _, e := range rs.Exceptions {
		k, m := exceptionKey(e)
		c.sets[m][string(k)] = true
	}
	for _, p := range append(alwaysLocal(), local...) {
		k, m := localKey(p)
		c.sets[m][string(k)] = true
	}
	for _, m := range []string{mapExc4, mapExc6} {
		if len(c.sets[m]) > MaxExceptions {
			return c, fmt.Errorf("%d exception rules in %s: the bpf backend holds at most %d per family", len(c.sets[m]), m, MaxExceptions)
		}
	}
	for _, m := range []string{mapLocal4, mapLocal6} {
		if len(c.sets[m]) > MaxLocalAddrs {
			return c, fmt.Errorf("%d local addresses: the bpf backend holds at most %d per family", len(c.sets[m]), MaxLocalAddrs)
		}
	}
	c.config = configValue(rs)
	rates, err := encodeRates(rs)
	if err != nil {
		return c, err
	}
	c.rates = rates
	return c, nil
}

// alwaysLocal are destinations that reach this host whatever its interfaces:
// loopback, and the unspecified addresses, which connect() sends to loopback.
func alwaysLocal() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("0.0.0.0/32"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("::/128"),
	}
}

func configValue(rs policy.Ruleset) [configSize]byte {
	var v [configSize]byte
	mode := uint32(modeReject)
	switch rs.Mode {
	case policy.ModeRedirect:
		mode = modeRedirect
	case policy.ModeLog:
		mode = modeLog
	case policy.ModeExplain:
		mode = modeExplain
	}
	nativeEndian.PutUint32(v[0:], mode)
	if rs.AllowLocal {
		nativeEndian.PutUint32(v[4:], 1)
	}
	return v
}

func u32Key(v uint32) []byte { return nativeEndian.AppendUint32(nil, v) }

// exceptionKey is the LPM key of an exception rule and the map it goes in:
// {prefixlen (host order), uid (big-endian), port (32-bit big-endian),
// address}, with prefixlen = 64 + the rule's prefix length, so the uid and
// port match exactly and the address by prefix. An IPv4-mapped prefix goes in
// the IPv4 trie, as the program looks such destinations up there.
func exceptionKey(e policy.ExceptionRule) ([]byte, string) {
	p := unmapPrefix(e.Dst)
	k := nativeEndian.AppendUint32(nil, uint32(excFixedBits+p.Bits()))
	k = binary.BigEndian.AppendUint32(k, e.UID)
	k = binary.BigEndian.AppendUint32(k, uint32(e.Port))
	k = append(k, p.Addr().AsSlice()...)
	if p.Addr().Is4() {
		return k, mapExc4
	}
	return k, mapExc6
}

// localKey is the LPM key {prefixlen, address} of a local prefix.
func localKey(p netip.Prefix) ([]byte, string) {
	p = unmapPrefix(p)
	k := nativeEndian.AppendUint32(nil, uint32(p.Bits()))
	k = append(k, p.Addr().AsSlice()...)
	if p.Addr().Is4() {
		return k, mapLocal4
	}
	return k, mapLocal6
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96) and masks.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// describeKey renders a map key for drift reports and Render.
func describeKey(m string, k []byte) string {
	switch m {
	case mapPorts:
		if len(k) == 4 {
			return "port " + strconv.Itoa(int(nativeEndian.Uint32(k)))
		}
	case mapUIDs:
		if len(k) == 4 {
			return "uid " + strconv.FormatUint(uint64(nativeEndian.Uint32(k)), 10)
		}
	case mapExc4, mapExc6:
		if len(k) >= 12 {
			bits := int(nativeEndian.Uint32(k)) - excFixedBits
			uid := binary.BigEndian.Uint32(k[4:])
			port := binary.BigEndian.Uint32(k[8:])
			if a, ok := netip.AddrFromSlice(k[12:]); ok {
				return fmt.Sprintf("exception uid %d to %s port %d", uid, netip.PrefixFrom(a, bits), port)
			}
		}
	case mapLocal4, mapLocal6:
		if len(k) >= 4 {
			if a, ok := netip.AddrFromSlice(k[4:]); ok {
				return "local " + netip.PrefixFrom(a, int(nativeEndian.Uint32(k))).String()
			}
		}
	}
	return fmt.Sprintf("%x", k)
}

func describeConfig(v [configSize]byte) string {
	mode := map[uint32]string{modeReject: "reject", modeRedirect: "redirect", modeLog: "log", modeExplain: "explain"}[nativeEndian.Uint32(v[0:])]
	if mode == "" {
		mode = fmt.Sprintf("unknown(%d)", nativeEndian.Uint32(v[0:]))
	}
	return fmt.Sprintf("mode %s, allow-local %t", mode, nativeEndian.Uint32(v[4:]) != 0)
}

// diffSets lists what to add to have reach want, and what to delete.
func diffSets(have, want map[string]bool) (add, del []string) {
	for k := range want {
		if !have[k] {
			add = append(add, k)
		}
	}
	for k := range have {
		if !want[k] {
			del = append(del, k)
		}
	}
	slices.Sort(add)
	slices.Sort(del)
	return add, del
}

// problems describes every difference between the maps' contents and want.
func problems(have, want contents) []string {
	var out []string
	if have.config != want.config {
		out = append(out, fmt.Sprintf("%s holds %s, want %s", mapConfig, describeConfig(have.config), describeConfig(want.config)))
	}
	for _, m := range setMaps {
		add, del := diffSets(have.sets[m], want.sets[m])
		for _, k := range add {
			out = append(out, fmt.Sprintf("%s lacks %s", m, describeKey(m, []byte(k))))
		}
		for _, k := range del {
			out = append(out, fmt.Sprintf("%s has unexpected %s", m, describeKey(m, []byte(k))))
		}
	}
	if have.rates != nil && want.rates != nil { // nil: sg_rates is not pinned (reported already)
		out = append(out, rateProblems(have.rates, want.rates)...)
	}
	return out
}

// render describes what the maps hold for rs, for plan output.
func render(rs policy.Ruleset, c contents) string {
	var b strings.Builder
	fmt.Fprintf(&b, "bpf cgroup/connect4 + cgroup/connect6 programs %s, %s\n", progConnect4, progConnect6)
	fmt.Fprintf(&b, "%s: %s\n", mapConfig, describeConfig(c.config))
	for _, m := range setMaps {
		keys := make([]string, 0, len(c.sets[m]))
		for k := range c.sets[m] {
			keys = append(keys, describeKey(m, []byte(k)))
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "%s (%d): %s\n", m, len(keys), strings.Join(keys, ", "))
	}
	b.WriteString(renderRates(c.rates))
	return b.String()
}
