package cli

import (
	"log/slog"
	"strings"

	"github.com/smtpguard/smtpguard/internal/policy"
)

// backendChoices is what --backend takes in this build: "auto" and the
// names of the compiled-in backends, best first ("auto|bpf|nft").
func backendChoices() string {
	names := []string{policy.BackendAuto}
	for _, b := range systemBackends(slog.New(slog.DiscardHandler), "") {
		names = append(names, b.Name())
	}
	return strings.Join(names, "|")
}
