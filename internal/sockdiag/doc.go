// Package sockdiag lists this network namespace's TCP connections and ends
// the ones a new policy no longer allows, through the kernel's sock_diag
// netlink interface (what "ss -K" does).
//
// Rules decide new connections only: an SMTP session a user opened before
// "enable", "revoke" or "set ports" would otherwise keep sending for as long as
// the remote server lets it. SOCK_DESTROY needs a kernel built with
// CONFIG_INET_DIAG_DESTROY (Debian's and most distributions' are); without it
// the kernel answers EOPNOTSUPP and ErrUnsupported reports that.
package sockdiag
