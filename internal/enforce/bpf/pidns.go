package bpf

import "github.com/cilium/ebpf"

// mapPidNS names the pid namespace the events' pids are numbered in: the
// event reader's (the daemon's), which it writes when it opens the ring
// buffer (pidns_linux.go). Value {dev u64, ino u64} at key 0: the nsfs
// device as the kernel's dev_t (MKDEV, not stat's encoding) and the
// namespace's inode. The programs then report pids with
// bpf_get_ns_current_pid_tgid, which fills in 0 for a process whose own pid
// namespace is another (nested in the reader's, or outside it): the helper
// cannot translate, and 0 is unknown where another number would name the
// wrong process. Zeroes (a new map, or a reader in the initial pid
// namespace) keep bpf_get_current_pid_tgid: the initial namespace's pids,
// which name processes in nested namespaces too. Its own map, not a field
// of sg_config: pinned maps of older versions keep their layout.
const (
	mapPidNS     = "sg_pidns"
	pidNSSize    = 16
	initPidNSIno = 0xEFFFFFFC // PROC_PID_INIT_INO: the initial pid namespace's inode, fixed
)

func pidNSMapSpecs() map[string]*ebpf.MapSpec {
	return map[string]*ebpf.MapSpec{
		mapPidNS: {Name: mapPidNS, Type: ebpf.Array, KeySize: 4, ValueSize: pidNSSize, MaxEntries: 1},
	}
}

// pidNSValue is sg_pidns's value for the pid namespace whose nsfs file has
// device stDev (as stat reports it) and inode ino: zeroes for the initial
// namespace. The kernel compares the device with the nsfs super block's
// dev_t, major<<20 | minor, which differs from stat's encoding for minors
// above 255.
func pidNSValue(stDev, ino uint64) [pidNSSize]byte {
	var v [pidNSSize]byte
	if ino == initPidNSIno {
		return v
	}
	// glibc's major() and minor().
	major := uint64(uint32(stDev>>8)&0xfff | uint32(stDev>>32)&^0xfff)
	minor := uint64(uint32(stDev)&0xff | uint32(stDev>>12)&^0xff)
	nativeEndian.PutUint64(v[0:], major<<20|minor)
	nativeEndian.PutUint64(v[8:], ino)
	return v
}
