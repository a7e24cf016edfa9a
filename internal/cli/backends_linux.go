//go:build linux

package cli

import (
	"log/slog"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/enforce/bpf"
	"github.com/smtpguard/smtpguard/internal/enforce/nft"
)

// systemBackends lists the backends this build enforces with, best first:
// bpf, which also sees containers, setuid drops and passed sockets, and
// names the process; nft where bpf cannot work (no cgroup2, no bpf_link,
// bpf() refused). bpffs is where the bpf backend pins (empty: /sys/fs/bpf;
// tests give their own through SMTPGUARD_BPFFS).
func systemBackends(logger *slog.Logger, bpffs string) []enforce.Backend {
	return []enforce.Backend{newBPF(logger, bpffs), nft.New(nft.Config{Logger: logger})}
}

// serveBackends lists the backends the daemon enforces with and serves to the
// CLI on its socket. The daemon owns its nftables table (where the kernel
// supports owner+persist tables), so while it runs nobody else can flush or
// edit it; the CLI's changes come through the socket.
func serveBackends(logger *slog.Logger, owned bool, bpffs string) []enforce.Backend {
	if !owned {
		return systemBackends(logger, bpffs)
	}
	return []enforce.Backend{newBPF(logger, bpffs), nft.New(nft.Config{Logger: logger, Owner: true})}
}

func newBPF(logger *slog.Logger, bpffs string) enforce.Backend {
	return bpf.New(bpf.Config{Logger: logger, BPFFS: bpffs, MountBPFFS: true})
}
