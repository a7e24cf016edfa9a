package cli

import "path/filepath"

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
