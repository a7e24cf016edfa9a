package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/smtpguard/smtpguard/internal/engine"
)

// printRates adds the rate limits and the allowed connections to status;
// max bounds the lists as for the others (-1: no bound).
// Without any limit it prints nothing of them.
func printRates(w io.Writer, st engine.Status, max int) {
	if len(st.RateLimits) > 0 || !strings.EqualFold(st.RateLimit, "off") && st.RateLimit != "" {
		fmt.Fprintf(w, "Rate limit:\t%s\n", rateLimitWords(st.RateLimit))
	}
	limited := make([]string, 0, len(st.RateLimits))
	for _, r := range st.RateLimits {
		limited = append(limited, fmt.Sprintf("%s %s", nameOrUID(r.User, r.UID), r.Rate))
	}
	if len(limited) > 0 {
		fmt.Fprintf(w, "Rate limited:\t%s\n", listOrNone(limited, max))
	}
	if len(st.AllowedConnections) > 0 {
		counts := make([]string, 0, len(st.AllowedConnections))
		for _, c := range st.AllowedConnections {
			counts = append(counts, fmt.Sprintf("%s %d", nameOrUID(c.User, c.UID), c.Count))
		}
		fmt.Fprintf(w, "Allowed connections:\t%s\n", listOrNone(counts, max))
	}
}

func rateLimitWords(r string) string {
	if r == "" || strings.EqualFold(r, "off") {
		return "off (set one with 'smtpguard set rate-limit N/PERIOD')"
	}
	return r + " per uid, for every allowance without its own"
}

func nameOrUID(name string, uid uint32) string {
	if name == "" {
		return fmt.Sprintf("uid %d", uid)
	}
	return name
}
