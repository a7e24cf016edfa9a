package web

import (
	"context"
	"fmt"
	"strings"
)

// hostOr is this server's name, or def when it has none.
func (s *Server) hostOr(def string) string {
	if s.host == "" {
		return def
	}
	return s.host
}

// removeConfirmation asks before an allowed user, group or exception is
// removed.
func removeConfirmation(f allowForm, back string) confirmation {
	kind := "user"
	if f.Kind == "group" {
		kind = "group"
	}
	who := kind + " " + strings.TrimSpace(f.Name)
	c := confirmation{Button: "Remove " + who, Cancel: back, Danger: true}
	if f.To != "" {
		c.Question = fmt.Sprintf("Remove the exception of %s for %s?", who, f.To)
		c.Effect = fmt.Sprintf("%s can no longer connect to %s (unless allowed otherwise).", capital(who), f.To)
		c.Button = fmt.Sprintf("Remove %s's exception", strings.TrimSpace(f.Name))
		return c
	}
	c.Question = fmt.Sprintf("Remove %s from the allowed %ss?", who, kind)
	if kind == "group" {
		c.Effect = "Its members can no longer connect to remote SMTP servers directly, unless allowed otherwise."
	} else {
		c.Effect = fmt.Sprintf("%s can no longer connect to remote SMTP servers directly: their scripts must send mail through this server's mail server.", capital(who))
	}
	return c
}

// unresolvedWarning says in words that an exception's host name has no
// address now, or "" when it resolved.
func (s *Server) unresolvedWarning(ctx context.Context, to string) string {
	st, err := s.eng.Status(ctx)
	if err != nil {
		return ""
	}
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(to)), ".")
	for _, ex := range st.Exceptions {
		if ex.Unresolved && strings.EqualFold(ex.To, host) {
			return fmt.Sprintf("%s does not resolve to any address now (%s), so this exception lets nothing through until it does. Check the spelling of the name; the daemon keeps looking it up.", ex.To, dnsWords(ex.LookupError))
		}
	}
	return ""
}

// stripDNSNote drops the engine's parenthesised lookup error from a
// message: the page says it in words instead.
func stripDNSNote(msg, to string) string {
	host := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(to)), ".")
	if i := strings.Index(msg, " ("+host+" does not resolve"); i >= 0 {
		return msg[:i]
	}
	return msg
}

// dnsWords turns a resolver's error into words.
func dnsWords(err string) string {
	e := strings.ToLower(err)
	switch {
	case e == "":
		return "no answer yet"
	case strings.Contains(e, "no such host"), strings.Contains(e, "nxdomain"), strings.Contains(e, "not found"):
		return "no such name in DNS"
	case strings.Contains(e, "timeout"), strings.Contains(e, "timed out"), strings.Contains(e, "deadline"):
		return "the DNS servers did not answer in time"
	case strings.Contains(e, "refused"), strings.Contains(e, "unreachable"), strings.Contains(e, "no nameserver"), strings.Contains(e, "offline"):
		return "no DNS server could be reached"
	case strings.Contains(e, "no address"), strings.Contains(e, "no a or aaaa"):
		return "the name has no address records"
	}
	return "the lookup failed"
}

// capital starts s with a capital letter (s is ASCII: "user alice").
func capital(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
