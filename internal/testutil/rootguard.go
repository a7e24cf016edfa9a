//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// RefuseRootAttach fails the test before it runs a smtpguard command line
// (args, without the binary) that could attach the bpf backend to the
// cgroup2 root, which every process of the host is under: "auto" prefers
// bpf, and bpf's default cgroup is the root. See CheckRootAttach.
func RefuseRootAttach(t testing.TB, args ...string) {
	t.Helper()
	if err := CheckRootAttach(args); err != nil {
		t.Fatalf("refusing to run smtpguard %s: %v", strings.Join(args, " "), err)
	}
}

// CheckRootAttach returns an error for a command line that enables (enable,
// import of an enabled policy file, serve, whose web and API enable use its
// --backend) with backend auto or bpf without naming a test cgroup
// (NewCgroup's, or one below it) for --cgroup or the file's cgroup. Naming
// another backend (--backend nft) is safe.
func CheckRootAttach(args []string) error {
	cmd, rest := subcommand(args)
	switch cmd {
	case "enable":
		return checkBackendCgroup(flagValue(rest, "--backend", policy.BackendAuto), flagValue(rest, "--cgroup", ""), "--backend", "--cgroup")
	case "serve":
		// serve's --backend defaults to the stored one, which a test
		// cannot know from the command line: it must name one.
		return checkBackendCgroup(flagValue(rest, "--backend", policy.BackendAuto), flagValue(rest, "--cgroup", ""), "--backend", "--cgroup")
	case "import":
		for _, a := range rest {
			if strings.HasPrefix(a, "--from-") {
				return nil // other tools' formats carry no backend: it stays the stored one
			}
		}
		file := firstPositional(rest)
		if file == "" {
			return nil
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil // import fails on it too
		}
		f, err := policy.DecodeFile(data, policy.FormatForPath(file))
		if err != nil || !f.Enabled {
			return nil // rejected as bad input, or enables nothing
		}
		return checkBackendCgroup(f.Backend, f.Cgroup, "the file's backend", "the file's cgroup")
	}
	return nil
}

// checkBackendCgroup refuses auto and bpf unless cgroup is a test cgroup.
func checkBackendCgroup(backend, cgroup, backendWhat, cgroupWhat string) error {
	if backend != policy.BackendAuto && backend != "bpf" {
		return nil
	}
	if cgroup == "" {
		return fmt.Errorf("%s %s attaches to the cgroup2 root unless %s names a test cgroup (testutil.NewCgroup): give --backend nft or a test cgroup", backendWhat, backend, cgroupWhat)
	}
	if err := RefuseRootCgroup(cgroup); err != nil {
		return err
	}
	if !slices.ContainsFunc(strings.Split(filepath.Clean(cgroup), "/"), func(c string) bool { return strings.HasPrefix(c, CgroupPrefix) }) {
		return fmt.Errorf("%s %s is not a test cgroup (testutil.NewCgroup's %s*, or below one)", cgroupWhat, cgroup, CgroupPrefix)
	}
	return nil
}

// subcommand skips the global flags and returns the command and its
// arguments.
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--state-dir":
			i++ // its value
		case strings.HasPrefix(a, "-"):
		default:
			return a, args[i+1:]
		}
	}
	return "", nil
}

// flagValue is the value of --name (as "--name V" or "--name=V"), or def.
func flagValue(args []string, name, def string) string {
	v := def
	for i, a := range args {
		if a == name && i+1 < len(args) {
			v = args[i+1]
		} else if after, ok := strings.CutPrefix(a, name+"="); ok {
			v = after
		}
	}
	return v
}

// firstPositional is the first argument that is not a flag.
func firstPositional(args []string) string {
	for _, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

// RootPrograms are the ids of the programs attached directly to the
// cgroup2 root for connect4 and connect6, by attach type.
type RootPrograms map[string][]ebpf.ProgramID

// ListRootPrograms lists the programs attached to the cgroup2 root for the
// hooks the bpf backend uses: a TestMain lists them before its tests and
// fails the run when they differ after (WatchRootCgroup).
func ListRootPrograms() (RootPrograms, error) {
	root, err := Cgroup2Root()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("open the cgroup2 root: %w", err)
	}
	defer f.Close()
	out := RootPrograms{}
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupInet6Connect} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at})
		if err != nil {
			return nil, fmt.Errorf("list the programs of the cgroup2 root %s: %w", root, err)
		}
		ids := []ebpf.ProgramID{}
		for _, p := range res.Programs {
			ids = append(ids, p.ID)
		}
		out[at.String()] = ids
	}
	return out, nil
}

// WatchRootCgroup lists the root cgroup's programs now and returns a check
// that lists them again and returns an error saying what changed. For
// TestMain of packages whose tests run smtpguard: m.Run between the two.
func WatchRootCgroup() (check func() error, err error) {
	before, err := ListRootPrograms()
	if err != nil {
		return nil, err
	}
	return func() error {
		after, err := ListRootPrograms()
		if err != nil {
			return err
		}
		if fmt.Sprint(before) != fmt.Sprint(after) {
			return errors.New("programs attached to the cgroup2 root changed during the tests: before " + fmt.Sprint(before) + ", after " + fmt.Sprint(after))
		}
		return nil
	}, nil
}
