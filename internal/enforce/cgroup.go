package enforce

// CgroupPlaced is a backend that attaches to a cgroup (bpf) and can be told
// which one.
type CgroupPlaced interface {
	WithCgroup(path string) Backend
}

// InCgroup points the cgroup backends among bs at path (empty: as they are,
// their default being the cgroup2 root); the others are returned unchanged.
func InCgroup(bs []Backend, path string) []Backend {
	if path == "" {
		return bs
	}
	out := make([]Backend, len(bs))
	for i, b := range bs {
		if p, ok := b.(CgroupPlaced); ok {
			b = p.WithCgroup(path)
		}
		out[i] = b
	}
	return out
}
