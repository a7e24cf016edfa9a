package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rate is a limit of Count connections per Period, enforced as a token
// bucket per uid: Count connections may start at once, and the bucket refills
// at Count per Period. The zero Rate means "no limit".
type Rate struct {
	Count  uint32
	Period time.Duration
}

// The periods a rate may name, as "N/PERIOD".
var ratePeriods = map[string]time.Duration{
	"s": time.Second,
	"m": time.Minute,
	"h": time.Hour,
	"d": 24 * time.Hour,
}

// maxRateCount bounds N so that backends can keep the bucket in 32 bits.
const maxRateCount = 1_000_000

// IsZero reports whether r is "no limit".
func (r Rate) IsZero() bool { return r.Count == 0 }

// String renders r as ParseRate reads it ("100/h"), "off" for no limit.
func (r Rate) String() string {
	if r.IsZero() {
		return "off"
	}
	for _, unit := range []string{"d", "h", "m", "s"} {
		if r.Period == ratePeriods[unit] {
			return strconv.FormatUint(uint64(r.Count), 10) + "/" + unit
		}
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Period)
}

// ParseRate parses "N/PERIOD" with PERIOD one of s, m, h, d (also spelt
// second, minute, hour, day), or "off" for no limit.
func ParseRate(s string) (Rate, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "off" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(t, "/")
	if !ok {
		return Rate{}, fmt.Errorf("invalid rate %q: write N/PERIOD with PERIOD s, m, h or d (e.g. 100/h), or off", s)
	}
	count, err := strconv.ParseUint(strings.TrimSpace(n), 10, 32)
	if err != nil || count == 0 || count > maxRateCount {
		return Rate{}, fmt.Errorf("invalid rate %q: the count must be a whole number from 1 to %d", s, maxRateCount)
	}
	unit = strings.TrimSpace(unit)
	switch unit {
	case "sec", "second":
		unit = "s"
	case "min", "minute":
		unit = "m"
	case "hour":
		unit = "h"
	case "day":
		unit = "d"
	}
	period, ok := ratePeriods[unit]
	if !ok {
		return Rate{}, fmt.Errorf("invalid rate %q: the period must be s, m, h or d (e.g. 100/h)", s)
	}
	return Rate{Count: uint32(count), Period: period}, nil
}

// UIDRate is the limit on one uid's allowed connections to restricted ports
// (its full allowance and its exceptions together): one bucket per uid.
type UIDRate struct {
	UID  uint32
	Rate Rate
}
