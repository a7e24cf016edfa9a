package bpf

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/google/go-cmp/cmp"

	"github.com/smtpguard/smtpguard/internal/policy"
)

func le32(v uint32) []byte { return nativeEndian.AppendUint32(nil, v) }

func TestExceptionKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rule    policy.ExceptionRule
		wantKey []byte
		wantMap string
	}{{
		name: "IPv4 CIDR",
		rule: policy.ExceptionRule{UID: 1001, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 587},
		// prefixlen 64+24, uid 1001 big-endian, port 587 as 32 bits big-endian, address
		wantKey: slices.Concat(le32(88), []byte{0, 0, 0x03, 0xe9}, []byte{0, 0, 0x02, 0x4b}, []byte{192, 0, 2, 0}),
		wantMap: mapExc4,
	}, {
		name:    "IPv4 host, unmasked input is masked",
		rule:    policy.ExceptionRule{UID: 0x01020304, Dst: netip.MustParsePrefix("198.51.100.7/32"), Port: 25},
		wantKey: slices.Concat(le32(96), []byte{1, 2, 3, 4}, []byte{0, 0, 0, 25}, []byte{198, 51, 100, 7}),
		wantMap: mapExc4,
	}, {
		name:    "IPv4-mapped IPv6 goes in the IPv4 trie",
		rule:    policy.ExceptionRule{UID: 7, Dst: netip.MustParsePrefix("::ffff:192.0.2.0/120"), Port: 465},
		wantKey: slices.Concat(le32(88), []byte{0, 0, 0, 7}, []byte{0, 0, 0x01, 0xd1}, []byte{192, 0, 2, 0}),
		wantMap: mapExc4,
	}, {
		name:    "IPv6 /32",
		rule:    policy.ExceptionRule{UID: 1001, Dst: netip.MustParsePrefix("2001:db8::/32"), Port: 25},
		wantKey: slices.Concat(le32(96), []byte{0, 0, 0x03, 0xe9}, []byte{0, 0, 0, 25}, netip.MustParseAddr("2001:db8::").AsSlice()),
		wantMap: mapExc6,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			key, m := exceptionKey(tc.rule)
			if m != tc.wantMap {
				t.Errorf("map %s, want %s", m, tc.wantMap)
			}
			if diff := cmp.Diff(tc.wantKey, key); diff != "" {
				t.Errorf("key (-want +got):\n%s", diff)
			}
			specs := mapSpecs(DefaultRingSize)
			if got, want := len(key), int(specs[m].KeySize); got != want {
				t.Errorf("key is %d bytes, map %s keys are %d", got, m, want)
			}
		})
	}
}

// TestPortByteOrder: the program reads user_port (network order) and swaps
// it to host order before the port lookup and into events; the map keys and
// the decoder use host order.
func TestPortByteOrder(t *testing.T) {
	c, err := encode(policy.Ruleset{Ports: []uint16{25, 587}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{string(le32(25)): true, string(le32(587)): true}
	if diff := cmp.Diff(want, c.sets[mapPorts]); diff != "" {
		t.Errorf("port keys (-want +got):\n%s", diff)
	}
	insns := connectProgram(4, progOptions{}).Instructions
	i := slices.IndexFunc(insns, func(ins asm.Instruction) bool { return ins.Symbol() == "tcp" })
	if i < 0 || i+1 >= len(insns) {
		t.Fatal("no port load in the program")
	}
	load, swap := insns[i], insns[i+1]
	if load.Offset != ctxUserPort || load.OpCode != asm.LoadMemOp(asm.Word) {
		t.Errorf("port load %v, want a word load of user_port (offset %d)", load, ctxUserPort)
	}
	if swap != asm.HostTo(asm.BE, load.Dst, asm.Half) {
		t.Errorf("after the port load %v, want a 16-bit network-to-host swap", swap)
	}
}

func TestLocalKeysAlwaysHaveLoopback(t *testing.T) {
	c, err := encode(policy.Ruleset{}, []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32"), netip.MustParsePrefix("::ffff:203.0.113.9/128")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range []string{mapLocal4, mapLocal6} {
		for k := range c.sets[m] {
			got = append(got, describeKey(m, []byte(k)))
		}
	}
	slices.Sort(got)
	want := []string{"local 0.0.0.0/32", "local 127.0.0.0/8", "local 198.51.100.7/32", "local 203.0.113.9/32", "local ::/128", "local ::1/128"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("local prefixes (-want +got):\n%s", diff)
	}
}

func TestEncodeConfigAndLimits(t *testing.T) {
	for _, tc := range []struct {
		rs   policy.Ruleset
		want string
	}{
		{policy.Ruleset{Mode: policy.ModeReject}, "mode reject, allow-local false"},
		{policy.Ruleset{Mode: policy.ModeRedirect, AllowLocal: true}, "mode redirect, allow-local true"},
		{policy.Ruleset{Mode: policy.ModeLog}, "mode log, allow-local false"},
	} {
		c, err := encode(tc.rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := describeConfig(c.config); got != tc.want {
			t.Errorf("config for %+v: %s, want %s", tc.rs, got, tc.want)
		}
	}
	many := make([]uint32, MaxAllowedUIDs+1)
	for i := range many {
		many[i] = uint32(i)
	}
	if _, err := encode(policy.Ruleset{UIDs: many}, nil); err == nil {
		t.Errorf("encode with %d uids: no error", len(many))
	}
}

func TestProblemsDescribeEachDifference(t *testing.T) {
	rs := policy.Ruleset{Mode: policy.ModeReject, Ports: []uint16{25}, UIDs: []uint32{0, 1001}}
	want, _ := encode(rs, nil)
	have, _ := encode(policy.Ruleset{Mode: policy.ModeLog, Ports: []uint16{25, 2525}, UIDs: []uint32{0},
		Exceptions: []policy.ExceptionRule{{UID: 5, Dst: netip.MustParsePrefix("192.0.2.0/24"), Port: 25}}}, nil)
	got := problems(have, want)
	wantProblems := []string{
		"sg_config holds mode log, allow-local false, want mode reject, allow-local false",
		"sg_ports has unexpected port 2525",
		"sg_allowed_uids lacks uid 1001",
		"sg_exc4 has unexpected exception uid 5 to 192.0.2.0/24 port 25",
	}
	if diff := cmp.Diff(wantProblems, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if p := problems(want, want); len(p) != 0 {
		t.Errorf("problems of identical contents: %v", p)
	}
}

func TestParseCgroup2Mount(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, want string
		ok                    bool
	}{
		{"unified", "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n", "/sys/fs/cgroup", true},
		{"hybrid", "25 20 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n" +
			"26 25 0:23 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n" +
			"27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "/sys/fs/cgroup/unified", true},
		{"optional fields and an escaped space", "41 31 0:38 / /mnt/cg\\040two rw shared:9 master:2 - cgroup2 none rw\n", "/mnt/cg two", true},
		{"v1 only", "27 25 0:24 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseCgroup2Mount(tc.mountinfo)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseCgroup2Mount = %q, %t; want %q, %t", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestProgramConstruction checks what can be checked without a kernel: both
// programs marshal (every label resolves), fit well within the verifier's
// limits, and reference exactly the maps they need.
func TestProgramConstruction(t *testing.T) {
	for _, tc := range []struct {
		family int
		opts   progOptions
		maps   []string
	}{
		{4, progOptions{}, []string{mapAllowed, mapUIDs, mapBuckets, mapConfig, mapDrops, mapEvents, mapExc4, mapExplainDst, mapExplainPort, mapLocal4, mapPorts, mapRates}},
		{6, progOptions{setRetval: true}, []string{mapAllowed, mapUIDs, mapBuckets, mapConfig, mapDrops, mapEvents, mapExc4, mapExc6, mapExplainDst, mapExplainPort, mapLocal4, mapLocal6, mapPorts, mapRates}},
	} {
		spec := connectProgram(tc.family, tc.opts)
		if err := spec.Instructions.Marshal(discard{}, binary.LittleEndian); err != nil {
			t.Errorf("family %d: marshal: %v", tc.family, err)
		}
		if n := len(spec.Instructions); n < 50 || n > 1000 {
			t.Errorf("family %d: %d instructions, want between 50 and 1000", tc.family, n)
		}
		var refs []string
		calls := map[asm.BuiltinFunc]bool{}
		for _, ins := range spec.Instructions {
			if ins.IsLoadFromMap() && !slices.Contains(refs, ins.Reference()) {
				refs = append(refs, ins.Reference())
			}
			if ins.IsBuiltinCall() {
				calls[asm.BuiltinFunc(ins.Constant)] = true
			}
		}
		slices.Sort(refs)
		if diff := cmp.Diff(tc.maps, refs); diff != "" {
			t.Errorf("family %d: maps (-want +got):\n%s", tc.family, diff)
		}
		if calls[asm.FnSetRetval] != tc.opts.setRetval {
			t.Errorf("family %d: calls bpf_set_retval %t, want %t", tc.family, calls[asm.FnSetRetval], tc.opts.setRetval)
		}
		for _, want := range []asm.BuiltinFunc{asm.FnGetCurrentUidGid, asm.FnGetCurrentPidTgid, asm.FnGetCurrentComm, asm.FnRingbufOutput, asm.FnGetSocketCookie, asm.FnGetNetnsCookie} {
			if !calls[want] {
				t.Errorf("family %d: no call to %v", tc.family, want)
			}
		}
		if name := spec.Name; len(name) > 15 || name[:3] != "sg_" {
			t.Errorf("program name %q: want sg_ and at most 15 characters", name)
		}
	}
	for name := range mapSpecs(DefaultRingSize) {
		if len(name) > 15 || name[:3] != "sg_" {
			t.Errorf("map name %q: want sg_ and at most 15 characters", name)
		}
	}
	if s := mapSpecs(DefaultRingSize)[mapUIDs].MaxEntries; s < 65536 {
		t.Errorf("allowed uid map holds %d, want at least 65536", s)
	}
	if s := mapSpecs(DefaultRingSize)[mapEvents].MaxEntries; s < 1<<20 {
		t.Errorf("ring buffer of %d bytes, want at least 1 MiB", s)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
