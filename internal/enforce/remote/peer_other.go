//go:build !linux

package remote

import (
	"fmt"
	"net"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// peerUID cannot identify peers off Linux, so every connection is refused.
func peerUID(conn *net.UnixConn) (uint32, error) {
	return 0, fmt.Errorf("peer credentials: %w", enforce.ErrNotSupported)
}
