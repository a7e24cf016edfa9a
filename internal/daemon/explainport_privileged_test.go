//go:build linux

package daemon

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/testutil"
)

// bindAsNobody, set in a child's environment, makes
// TestPrivilegedExplainPortIsNotForEveryone the child: it drops to uid and
// gid 65534 and tries to listen on the responder's default port.
const bindAsNobody = "SMTPGUARD_TEST_BIND_AS_NOBODY"

// TestPrivilegedExplainPortIsNotForEveryone: while no daemon listens on the
// explain responder's port (stopped, restarting, or before it starts) the
// kernel still hands every blocked connection to whatever listens there. An
// ordinary user must not be able to be that listener: it would read the
// mail, and the credentials, of every other user's blocked script. The
// default port is one only root may listen on.
func TestPrivilegedExplainPortIsNotForEveryone(t *testing.T) {
	testutil.Privileged(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(policy.DefaultExplainPort))
	if os.Getenv(bindAsNobody) != "" {
		if err := testutil.DropPrivileges(65534, 65534, nil); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("RESULT refused: %v", err)
			return
		}
		ln.Close()
		t.Log("RESULT listening")
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := testutil.NewNetNS(t)
	cmd := ns.Command(exe, "-test.run=^TestPrivilegedExplainPortIsNotForEveryone$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), bindAsNobody+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	switch {
	case strings.Contains(string(out), "RESULT listening"):
		t.Errorf("uid 65534 can listen on %s, the explain responder's default port: while no daemon listens there it receives every blocked user's SMTP connection", addr)
	case !strings.Contains(string(out), "RESULT refused"):
		t.Fatalf("child said neither:\n%s", out)
	}
}
