//go:build linux

package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// AllowedConnections is enforce.AllowedCounter: the allowed chain's counter
// per uid, read from its dynamic set in one dump. A uid appears once it has
// made an allowed connection; the counts restart when the table is rebuilt.
func (b *Backend) AllowedConnections(ctx context.Context) (map[uint32]uint64, error) {
	c, release, err := b.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	els, err := c.GetSetElements(dynamicSet(table(), setAllowedCount))
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return map[uint32]uint64{}, nil // no table, or one from before counting
		}
		return nil, fmt.Errorf("read set %s of table inet %s: %w", setAllowedCount, tableName, classify(err))
	}
	out := make(map[uint32]uint64, len(els))
	for _, e := range els {
		if len(e.Key) < 4 || e.Counter == nil {
			continue
		}
		out[binary.NativeEndian.Uint32(e.Key)] += e.Counter.Packets
	}
	return out, nil
}

var _ enforce.AllowedCounter = (*Backend)(nil)
