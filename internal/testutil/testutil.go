//go:build linux

// Package testutil gives privileged tests their own network namespaces, veth
// links, listeners and test users, and cleans all of them up. Nothing here
// touches the host's firewall, its network namespace or existing accounts.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// PrivilegedEnv enables privileged tests; make test sets it when run as root.
const PrivilegedEnv = "SMTPGUARD_PRIVILEGED_TESTS"

// Prefixes of everything this package creates, so leftovers of a crashed run
// can be found and removed.
const (
	NetNSPrefix = "sgt-"
	UserPrefix  = "sgt"
)

// Privileged skips the test unless privileged tests are enabled, and fails a
// test that needs privileges but is not named TestPrivileged*, so such tests
// can always be found and run by name.
func Privileged(t testing.TB) {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	if !strings.HasPrefix(top, "TestPrivileged") {
		t.Fatalf("%s needs privileges but is not named TestPrivileged*", top)
	}
	if os.Getenv(PrivilegedEnv) != "1" {
		t.Skipf("privileged test: set %s=1 and run as root (make test does)", PrivilegedEnv)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("%s=1 but not running as root", PrivilegedEnv)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// run executes a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
