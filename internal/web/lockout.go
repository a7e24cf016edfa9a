package web

import (
	"sync"
	"time"
)

// limiterCapacity bounds the memory a flood of distinct names or addresses
// can take; beyond it the stalest entries are forgotten.
const limiterCapacity = 10000

// limiter counts failures per key within a window and locks a key out for a
// while once it reaches the maximum. It lives in memory: a restart forgets
// it, which only ever helps the legitimate owner of a locked account.
type limiter struct {
	max     int
	window  time.Duration
	lockFor time.Duration

	mu      sync.Mutex // protects entries
	entries map[string]*failures
}

type failures struct {
	count  int
	first  time.Time // start of the current window
	until  time.Time // locked out until then; zero when not locked
	latest time.Time
}

func newLimiter(max int, window, lockFor time.Duration) *limiter {
	return &limiter{max: max, window: window, lockFor: lockFor, entries: map[string]*failures{}}
}

// locked reports whether key is locked out at now, and until when.
func (l *limiter) locked(key string, now time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.entries[key]
	if f == nil || !now.Before(f.until) {
		return time.Time{}, false
	}
	return f.until, true
}

// fail counts one failure for key.
func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.entries[key]
	if f == nil || now.Sub(f.first) >= l.window && !now.Before(f.until) {
		if f == nil && len(l.entries) >= limiterCapacity {
			l.evict(now)
		}
		f = &failures{first: now}
		l.entries[key] = f
	}
	f.count++
	f.latest = now
	if f.count >= l.max {
		f.until = now.Add(l.lockFor)
		f.count, f.first = 0, now
	}
}

// reset forgets key's failures (after a successful sign-in).
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, key)
}

// evict drops entries that no longer matter, or else the stalest one.
// Callers hold mu.
func (l *limiter) evict(now time.Time) {
	var stalest string
	var at time.Time
	for k, f := range l.entries {
		if now.Sub(f.latest) >= l.window && !now.Before(f.until) {
			delete(l.entries, k)
			continue
		}
		if stalest == "" || f.latest.Before(at) {
			stalest, at = k, f.latest
		}
	}
	if len(l.entries) >= limiterCapacity {
		delete(l.entries, stalest)
	}
}
