package bpf

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/google/go-cmp/cmp"
)

// TestPidNSValue: the device is the kernel's dev_t (major<<20 | minor), which
// ns_match compares with the nsfs super block; the initial namespace is
// zeroes (the programs keep the initial namespace's pids).
func TestPidNSValue(t *testing.T) {
	for _, c := range []struct {
		name             string
		stDev, ino       uint64
		wantDev, wantIno uint64
	}{
		{"nsfs device 0:4", 4, 4026532300, 4, 4026532300},
		{"minor above 255 (stat's split encoding)", 0x10002c, 4026532301, 300, 4026532301},
		{"major 8 minor 1", 0x801, 4026532302, 8<<20 | 1, 4026532302},
		{"the initial pid namespace", 4, initPidNSIno, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := pidNSValue(c.stDev, c.ino)
			got := [2]uint64{binary.NativeEndian.Uint64(v[0:]), binary.NativeEndian.Uint64(v[8:])}
			if diff := cmp.Diff([2]uint64{c.wantDev, c.wantIno}, got); diff != "" {
				t.Errorf("pidNSValue(%#x, %d) {dev, ino} (-want +got):\n%s", c.stDev, c.ino, diff)
			}
		})
	}
}

// TestProgramsNumberPidsInTheReadersNamespace: with the helper, each report
// path reads sg_pidns and calls bpf_get_ns_current_pid_tgid into the event's
// pid field; without it, the programs neither reference the map (it may not
// be pinned by older versions' Apply) nor call the helper.
func TestProgramsNumberPidsInTheReadersNamespace(t *testing.T) {
	count := func(insns asm.Instructions) (refs, nsCalls int) {
		for _, ins := range insns {
			if ins.Reference() == mapPidNS {
				refs++
			}
			if ins.IsBuiltinCall() && asm.BuiltinFunc(ins.Constant) == asm.FnGetNsCurrentPidTgid {
				nsCalls++
			}
		}
		return refs, nsCalls
	}
	for _, c := range []struct {
		family int
		nsPid  bool
		want   [2]int
	}{
		// connect4 reports from one body, connect6 from the mapped and the
		// native one.
		{4, true, [2]int{1, 1}},
		{6, true, [2]int{2, 2}},
		{4, false, [2]int{0, 0}},
		{6, false, [2]int{0, 0}},
	} {
		refs, calls := count(connectProgram(c.family, progOptions{nsPid: c.nsPid}).Instructions)
		if diff := cmp.Diff(c.want, [2]int{refs, calls}); diff != "" {
			t.Errorf("connect%d nsPid %t: {sg_pidns references, ns pid calls} (-want +got):\n%s", c.family, c.nsPid, diff)
		}
	}
	if _, ok := mapSpecs(DefaultRingSize)[mapPidNS]; !ok {
		t.Errorf("mapSpecs lacks %s", mapPidNS)
	}
}
