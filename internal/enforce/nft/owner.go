//go:build linux

package nft

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// Ownership (issue 12, hole 8). A table created with NFT_TABLE_F_OWNER |
// NFT_TABLE_F_PERSIST belongs to the netlink socket that created it: nobody
// else can flush ("nft flush ruleset" skips it), delete or edit it (EPERM),
// and when the socket closes the table stays, orphaned, enforcing, until
// someone adopts or deletes it. Measured on Linux 6.18; see README.md.

// ownedFlags are the table flags of an owned table.
const ownedFlags = nftables.TableFlagOwner | nftables.TableFlagPersist

// Owned reports whether this backend currently owns the table: Config.Owner was
// set, the kernel supports owned persistent tables, and the last Apply or
// Verify made or found the table ours (whatever else Verify found).
func (b *Backend) Owned() bool {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	return b.lasting != nil && b.ownerSupported && b.owned
}

// Close releases the lasting connection of a backend with Config.Owner. The
// table stays in the kernel and keeps enforcing, orphaned: the next owner
// adopts it, and until then anyone may change or delete it again. Using the
// backend after Close opens a new connection (and owns the table again at
// the next Apply). Close of a backend without Config.Owner does nothing.
func (b *Backend) Close() error {
	b.connMu.Lock()
	defer b.connMu.Unlock()
	b.owned = false
	if b.lasting == nil {
		return nil
	}
	err := b.lasting.CloseLasting()
	b.lasting = nil
	b.forget()
	return err
}

// ownerConn returns the lasting connection, opening it (and learning whether
// the kernel supports owned tables) on first use. The caller holds connMu.
func (b *Backend) ownerConn() (*nftables.Conn, error) {
	if b.lasting != nil {
		return b.lasting, nil
	}
	c, err := b.dial()
	if err != nil {
		return nil, err
	}
	port, err := c.GetPortID()
	if err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("netlink port of the nftables connection: %w", err)
	}
	if !b.ownerProbed {
		// A scratch table, created owned and deleted in one transaction,
		// tells whether the kernel knows both flags (EOPNOTSUPP before 6.9:
		// owner alone since 5.12 would delete our table when we exit).
		t := &nftables.Table{Name: tableName + "_owner_probe", Family: nftables.TableFamilyINet, Flags: ownedFlags}
		c.AddTable(t)
		c.DelTable(t)
		switch err := c.Flush(); {
		case err == nil:
			b.ownerSupported = true
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EINVAL):
			b.logger.Warn("this kernel cannot make table inet smtpguard owned and persistent (needs Linux 6.9): other processes can flush or edit it, and drift repair restores it",
				"table", tableName, "err", err)
		default:
			c.CloseLasting()
			return nil, classify(fmt.Errorf("probe owned tables: %w", err))
		}
		b.ownerProbed = true
	}
	b.lasting, b.port = c, port
	return c, nil
}

// myPort is the netlink port our table is owned by, 0 when we own nothing.
// The caller holds connMu (owner mode) or is not in owner mode.
func (b *Backend) myPort() uint32 {
	if b.owner && b.ownerSupported && b.lasting != nil {
		return b.port
	}
	return 0
}

// setOwned records whether the table is ours; only in owner mode, where the
// caller holds connMu.
func (b *Backend) setOwned(v bool) {
	if b.owner {
		b.owned = v
	}
}

// wantFlags are the flags of the table we create.
func (b *Backend) wantFlags() nftables.TableFlags {
	if b.myPort() != 0 {
		return ownedFlags
	}
	return 0
}

// ownedByOther reports whether st's table is owned by a socket other than
// ours (port 0: we own nothing).
func (st *state) ownedByOther(port uint32) bool {
	return st.present && st.flags&nftables.TableFlagOwner != 0 && st.owner != port
}

// ownedBy reports whether st's table is owned by the socket with port.
func (st *state) ownedBy(port uint32) bool {
	return st.present && st.flags&nftables.TableFlagOwner != 0 && st.owner == port
}

// errOwnedBy explains a table owned by another process.
func errOwnedBy(port uint32) error {
	return fmt.Errorf("table inet %s is owned by another process (netlink port %d, usually its pid): %w", tableName, port, enforce.ErrOwnedElsewhere)
}

// ownedError turns the EPERM of a write to a table owned by someone else
// into ErrOwnedElsewhere; other errors pass unchanged.
func (b *Backend) ownedError(c *nftables.Conn, err error) error {
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	t, lerr := c.ListTableOfFamily(tableName, nftables.TableFamilyINet)
	if lerr != nil || t.Flags&nftables.TableFlagOwner == 0 || t.Owner == b.myPort() {
		return err
	}
	return errOwnedBy(t.Owner)
}
