package bpf

import "github.com/cilium/ebpf"

// mapWriter is the sync map: one u64, the token of the Backend that last
// wrote (or is writing) the set maps and the config. The programs never
// read it. A Backend diffs against what it wrote last, without reading the
// maps, only while the token is still its own: every writer puts its token
// there before its first element write, so another process's change (the
// CLI while the daemon runs, or a second daemon) makes the next Apply read
// the maps again.
const mapWriter = "sg_writer"

func syncMapSpecs() map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		mapWriter: {Name: mapWriter, Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
	}
}
