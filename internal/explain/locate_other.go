//go:build !linux

package explain

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/smtpguard/smtpguard/internal/procinfo"
)

// Finder locates nothing off Linux: there are no rules to have sent anything.
type Finder struct {
	Proc     procinfo.Reader
	ByCookie func(cookie uint64) (netip.AddrPort, bool)
}

// Locate is a Locator.
func (Finder) Locate(context.Context, net.Conn) (Origin, error) {
	return Origin{}, errors.New("explain mode needs Linux")
}
