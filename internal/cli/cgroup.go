package cli

import (
	"path/filepath"

	"github.com/smtpguard/smtpguard/internal/enforce"
)

// cgroupPlaced is a backend that attaches to a cgroup (bpf) and can be told
// which one.
type cgroupPlaced interface {
	WithCgroup(path string) enforce.Backend
}

// withCgroup points the cgroup backends among bs at path (empty: their
// default, the cgroup2 root); the others are returned unchanged.
func withCgroup(bs []enforce.Backend, path string) []enforce.Backend {
	if path == "" {
		return bs
	}
	out := make([]enforce.Backend, len(bs))
	for i, b := range bs {
		if p, ok := b.(cgroupPlaced); ok {
			b = p.WithCgroup(path)
		}
		out[i] = b
	}
	return out
}

// cgroupFlag makes a --cgroup value absolute and clean, as it is stored.
func cgroupFlag(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", usagef("--cgroup %q: %v", path, err)
	}
	return filepath.Clean(abs), nil
}
