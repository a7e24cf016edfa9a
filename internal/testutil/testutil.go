//go:build linux

// Package testutil gives privileged tests their own network namespaces, veth
// links, listeners and test users, lets them connect as any of those users,
// and cleans all of it up. Nothing here touches the host's firewall, its
// network namespace or accounts it did not create.
//
// A package whose tests use ConnectAs must call MaybeRunHelper first thing in
// its TestMain: ConnectAs re-executes the test binary inside the namespace,
// and MaybeRunHelper is where that copy does its work and exits. Packages
// with privileged tests should also call RemoveLeftovers there:
//
//	func TestMain(m *testing.M) {
//		testutil.MaybeRunHelper()
//		if os.Getenv(testutil.PrivilegedEnv) == "1" {
//			if err := testutil.RemoveLeftovers(); err != nil {
//				fmt.Fprintln(os.Stderr, "warning:", err)
//			}
//		}
//		os.Exit(m.Run())
//	}
//
// Privileged tests are named TestPrivileged* (or BenchmarkPrivileged*), call
// Privileged(t) first, and run only with SMTPGUARD_PRIVILEGED_TESTS=1 as root:
//
//	SMTPGUARD_PRIVILEGED_TESTS=1 go test ./... -run Privileged
package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// PrivilegedEnv enables privileged tests; make test sets it when run as root.
const PrivilegedEnv = "SMTPGUARD_PRIVILEGED_TESTS"

// Prefixes of everything this package creates, so leftovers of a crashed run
// can be found and removed.
const (
	NetNSPrefix = "sgt-"
	UserPrefix  = "sgt"
)

// privilegedPrefixes are the names a privileged test or benchmark must have,
// so `go test -run Privileged` selects exactly the privileged suite.
var privilegedPrefixes = []string{"TestPrivileged", "BenchmarkPrivileged"}

// cmdTimeout bounds every command this package runs (ip, nft, useradd...).
const cmdTimeout = 2 * time.Minute

// Privileged skips the test unless SMTPGUARD_PRIVILEGED_TESTS=1. It fails a
// test that is not named TestPrivileged* (or BenchmarkPrivileged*), whether
// or not privileged tests are enabled, so a misnamed test is caught on every
// run; and it fails when privileged tests are enabled without root.
func Privileged(t testing.TB) {
	t.Helper()
	top, _, _ := strings.Cut(t.Name(), "/")
	named := false
	for _, p := range privilegedPrefixes {
		named = named || strings.HasPrefix(top, p)
	}
	if !named {
		t.Fatalf("%s needs privileges but is not named TestPrivileged*: rename it so -run Privileged selects it", top)
	}
	if os.Getenv(PrivilegedEnv) != "1" {
		t.Skipf("privileged test (network namespaces, nftables, test users): set %s=1 and run as root (make test does)", PrivilegedEnv)
	}
	if euid := os.Geteuid(); euid != 0 {
		t.Fatalf("%s=1 but running as uid %d: privileged tests need root", PrivilegedEnv, euid)
	}
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// command runs name with a time bound and returns stdout and stderr apart.
func command(name string, args ...string) (stdout, stderr []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	return o.Bytes(), e.Bytes(), err
}

// run executes a command and fails the test with its output on error.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, errOut, err := command(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return string(out)
}

// runAccountCmd runs useradd, groupadd, userdel, groupdel or usermod. These
// refuse at once when another process holds the lock on /etc/passwd or
// /etc/group (as test packages running in parallel do), so a lock failure is
// retried, a bounded number of times.
func runAccountCmd(name string, args ...string) (out []byte, err error) {
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; ; attempt++ {
		stdout, stderr, err := command(name, args...)
		out = append(stdout, stderr...)
		if err == nil || !bytes.Contains(out, []byte("lock")) || attempt >= 100 || time.Now().After(deadline) {
			return out, err
		}
		jitter, _ := rand.Int(rand.Reader, big.NewInt(80))
		time.Sleep(time.Duration(20+jitter.Int64()) * time.Millisecond)
	}
}

// exitCode is the exit status of a finished command, or -1.
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
