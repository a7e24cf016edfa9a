//go:build linux

package sockdiag

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Owner is what the kernel tells of one socket besides its addresses: who
// created it, its inode (the name /proc/PID/fd links show, "socket:[INODE]")
// and its cookie (bpf_get_socket_cookie's value).
type Owner struct {
	UID    uint32
	Inode  uint32
	Cookie uint64
}

// noCookie is INET_DIAG_NOCOOKIE: look the socket up by its addresses.
const noCookie = 0xffffffff

// Lookup finds the TCP socket whose own address is local and whose peer is
// remote, as that socket sees them (for a connection the explain responder
// accepted: the client's address, and the destination the client dialled).
// An IPv4-mapped address is looked up as IPv4, which also finds an IPv6
// socket connected to a mapped address.
func (c *Conn) Lookup(local, remote netip.AddrPort) (Owner, error) {
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is4() != ra.Is4() {
		return Owner{}, fmt.Errorf("look up socket %s -> %s: mixed address families", local, remote)
	}
	family := uint8(unix.AF_INET6)
	if la.Is4() {
		family = unix.AF_INET
	}
	var id [sizeofSockID]byte
	binary.BigEndian.PutUint16(id[0:2], local.Port())
	binary.BigEndian.PutUint16(id[2:4], remote.Port())
	copy(id[4:20], la.AsSlice())
	copy(id[20:36], ra.AsSlice())
	binary.NativeEndian.PutUint32(id[40:44], noCookie)
	binary.NativeEndian.PutUint32(id[44:48], noCookie)
	msgs, err := c.c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: netlink.Request},
		Data:   request(family, 0xffffffff, id),
	})
	if err != nil {
		return Owner{}, fmt.Errorf("look up socket %s -> %s: %w", local, remote, err)
	}
	for _, m := range msgs {
		if len(m.Data) < sizeofMsg {
			continue
		}
		b := m.Data
		rid := b[4 : 4+sizeofSockID]
		return Owner{
			UID:    binary.NativeEndian.Uint32(b[4+sizeofSockID+12:]),
			Inode:  binary.NativeEndian.Uint32(b[4+sizeofSockID+16:]),
			Cookie: uint64(binary.NativeEndian.Uint32(rid[40:44])) | uint64(binary.NativeEndian.Uint32(rid[44:48]))<<32,
		}, nil
	}
	return Owner{}, fmt.Errorf("look up socket %s -> %s: no such socket", local, remote)
}
