package daemon

import (
	"net/netip"
)

// Folding bounds what one uid can add to the database per minute. A blocked
// user looping over random IPv6 destinations stored 60,000 rows in 10 s
// (issue 12, hole 6). Per uid and minute, the first exactRowsPerMinute rows
// keep their exact destination; after that new destinations are folded into
// their prefix (/24 for IPv4, /64 for IPv6) while the uid has fewer than
// rowsPerMinute rows; after that into "other". "other" keeps the port and
// action, so a uid adds at most rowsPerMinute rows plus one per restricted
// port and action each minute. Folded attempts are still counted in full,
// and smtpguard_events_folded_total says how many were folded.
const (
	exactRowsPerMinute = 16
	rowsPerMinute      = 48
	// maxFoldBudgets bounds the uid-minutes tracked at once (each holds at
	// most rowsPerMinute + a few keys). Beyond it attempts of further uids
	// are dropped and counted as aggregate_limit.
	maxFoldBudgets = 1024
)

// Destinations that stand for several addresses.
const (
	foldedOther = "other"
	foldPrefix  = "prefix" // metric label
)

// foldKey is one row's destination, port and action within a uid-minute.
type foldKey struct {
	dst    string
	port   uint16
	action string
}

type uidMinute struct {
	uid    uint32
	minute int64
}

// folder decides the destination each attempt is stored under. It lives in
// the recorder's goroutine: no locking.
type folder struct {
	budgets map[uidMinute]map[foldKey]bool // rows already made, per uid-minute
	latest  int64                          // newest minute seen
}

// destination returns the destination to store an attempt under and, when
// folded, "prefix" or "other". ok is false when no more uid-minutes can be
// tracked.
func (f *folder) destination(uid uint32, minute int64, dst netip.Addr, port uint16, action string) (string, string, bool) {
	if f.budgets == nil {
		f.budgets = map[uidMinute]map[foldKey]bool{}
	}
	if minute > f.latest {
		f.latest = minute
	}
	um := uidMinute{uid, minute}
	rows := f.budgets[um]
	if rows == nil {
		if len(f.budgets) >= maxFoldBudgets {
			f.prune()
			if len(f.budgets) >= maxFoldBudgets {
				return "", "", false
			}
		}
		rows = map[foldKey]bool{}
		f.budgets[um] = rows
	}
	exact := foldKey{dst.String(), port, action}
	if rows[exact] {
		return exact.dst, "", true
	}
	if len(rows) < exactRowsPerMinute {
		rows[exact] = true
		return exact.dst, "", true
	}
	pfx := foldKey{foldedPrefix(dst), port, action}
	if rows[pfx] {
		return pfx.dst, foldPrefix, true
	}
	if len(rows) < rowsPerMinute {
		rows[pfx] = true
		return pfx.dst, foldPrefix, true
	}
	rows[foldKey{foldedOther, port, action}] = true
	return foldedOther, foldedOther, true
}

// prune forgets uid-minutes older than the minute before the newest seen:
// their rows are written, and late attempts for them start a new budget.
func (f *folder) prune() {
	for um := range f.budgets {
		if um.minute < f.latest-1 {
			delete(f.budgets, um)
		}
	}
}

// foldedPrefix is the /24 (IPv4) or /64 (IPv6) holding dst, as text.
func foldedPrefix(dst netip.Addr) string {
	bits := 64
	if dst.Is4() {
		bits = 24
	}
	p, err := dst.Prefix(bits)
	if err != nil {
		return foldedOther
	}
	return p.String()
}
