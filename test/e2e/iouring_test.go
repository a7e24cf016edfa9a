//go:build linux

package e2e

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring client: one IORING_OP_CONNECT, to prove that a connect
// submitted through io_uring (never through the connect(2) syscall) meets the
// same kernel rules.

type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}

type ioUringSqe struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	Pad         uint64
}

type ioUringCqe struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

const (
	ioringOpConnect      = 16
	ioringEnterGetevents = 1
	ioringEnterSqWakeup  = 2
	ioringSetupSqpoll    = 2

	ioringRegisterPersonality = 9
	ioringOffSqRing           = 0
	ioringOffCqRing           = 0x8000000
	ioringOffSqes             = 0x10000000
)

// ioUringConnect connects fd to sa through io_uring and returns the result
// the kernel reports (nil or an errno).
func ioUringConnect(fd int, sa *unix.RawSockaddrInet4) error {
	r, err := newIOURing(0)
	if err != nil {
		return err
	}
	defer r.close()
	return r.connect(fd, sa)
}

// ioURing is one ring with its three mappings.
type ioURing struct {
	fd           int
	sqpoll       bool
	personality  uint16 // nonzero: requests run with the credentials registered under it
	p            ioUringParams
	sq, cq, sqes []byte
}

// newIOURing sets up a ring of 4 entries with flags (ioringSetupSqpoll: a
// kernel thread with the creator's credentials submits what is queued).
func newIOURing(flags uint32) (*ioURing, error) {
	r := &ioURing{sqpoll: flags&ioringSetupSqpoll != 0}
	r.p.Flags = flags
	r.p.SqThreadIdle = 1000 // ms before the SQPOLL thread sleeps
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&r.p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup (flags %#x): %w", flags, errno)
	}
	r.fd = int(fd)
	var err error
	p := &r.p
	if r.sq, err = unix.Mmap(r.fd, ioringOffSqRing, int(p.SqOff.Array+p.SqEntries*4), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap sq ring: %w", err)
	}
	if r.cq, err = unix.Mmap(r.fd, ioringOffCqRing, int(p.CqOff.Cqes+p.CqEntries*uint32(unsafe.Sizeof(ioUringCqe{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap cq ring: %w", err)
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSqes, int(p.SqEntries*uint32(unsafe.Sizeof(ioUringSqe{}))), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("mmap sqes: %w", err)
	}
	return r, nil
}

// registerPersonality registers the caller's credentials with the ring;
// later requests run with them (IORING_REGISTER_PERSONALITY).
func (r *ioURing) registerPersonality() error {
	id, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), ioringRegisterPersonality, 0, 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_register personality: %w", errno)
	}
	r.personality = uint16(id)
	return nil
}

func (r *ioURing) close() {
	for _, m := range [][]byte{r.sqes, r.cq, r.sq} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	unix.Close(r.fd)
}

// connect queues one IORING_OP_CONNECT and waits for its completion. With
// SQPOLL io_uring_enter only wakes the ring's thread, which submits it.
func (r *ioURing) connect(fd int, sa *unix.RawSockaddrInet4) error {
	p, sq, cq, sqes := &r.p, r.sq, r.cq, r.sqes
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	tail := atomic.LoadUint32(u32(sq, p.SqOff.Tail))
	idx := tail & atomic.LoadUint32(u32(sq, p.SqOff.RingMask))
	sqe := (*ioUringSqe)(unsafe.Pointer(&sqes[idx*uint32(unsafe.Sizeof(ioUringSqe{}))]))
	*sqe = ioUringSqe{Opcode: ioringOpConnect, Fd: int32(fd), Addr: uint64(uintptr(unsafe.Pointer(sa))), Off: uint64(unix.SizeofSockaddrInet4), UserData: 1, Personality: r.personality}
	*(*uint32)(unsafe.Pointer(&sq[p.SqOff.Array+idx*4])) = idx
	atomic.StoreUint32(u32(sq, p.SqOff.Tail), tail+1)
	toSubmit, flags := uintptr(1), uintptr(ioringEnterGetevents)
	if r.sqpoll {
		toSubmit, flags = 0, ioringEnterGetevents|ioringEnterSqWakeup
	}
	var errno unix.Errno
	for range 100 { // a signal (Go's preemption) interrupts the wait
		_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), toSubmit, 1, flags, 0, 0)
		if errno != unix.EINTR {
			break
		}
		toSubmit = 0
	}
	runtime.KeepAlive(sa)
	if errno != 0 {
		return fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(u32(cq, p.CqOff.Head))
	if head == atomic.LoadUint32(u32(cq, p.CqOff.Tail)) {
		return fmt.Errorf("io_uring: no completion")
	}
	cqe := (*ioUringCqe)(unsafe.Pointer(&cq[p.CqOff.Cqes+(head&atomic.LoadUint32(u32(cq, p.CqOff.RingMask)))*uint32(unsafe.Sizeof(ioUringCqe{}))]))
	res := cqe.Res
	atomic.StoreUint32(u32(cq, p.CqOff.Head), head+1)
	if res < 0 {
		return unix.Errno(-res)
	}
	return nil
}

// rawInet4 converts a parsed address for io_uring.
func rawInet4(addr [4]byte, port uint16) *unix.RawSockaddrInet4 {
	sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return sa
}
