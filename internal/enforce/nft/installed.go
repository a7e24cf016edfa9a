//go:build linux

package nft

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Present is part of enforce.Backend: it reports whether table inet
// smtpguard exists, whatever it holds.
func (b *Backend) Present(ctx context.Context) (bool, error) {
	c, release, err := b.conn(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	if _, err := c.ListTableOfFamily(tableName, nftables.TableFamilyINet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("read table inet %s: %w", tableName, classify(err))
	}
	return true, nil
}
