package bpf

import (
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/policy"
)

// WithCgroup returns a backend like b that attaches to path (empty: b's
// own cgroup), so "enable --cgroup PATH" probes and applies there without
// going near the cgroup2 root.
func (b *Backend) WithCgroup(path string) enforce.Backend {
	if path == "" {
		return b
	}
	cfg := b.cfg
	cfg.CgroupPath = path
	return New(cfg)
}

// cgroupFor is where rs is enforced: the cgroup the policy stored, else the
// configured one (serve --cgroup), else the cgroup2 root.
func (b *Backend) cgroupFor(rs policy.Ruleset) (string, error) {
	if rs.Cgroup != "" {
		return rs.Cgroup, nil
	}
	return b.CgroupPath()
}
