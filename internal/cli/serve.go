package cli

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/daemon"
	"github.com/smtpguard/smtpguard/internal/resolve"
)

// DefaultListen keeps the metrics endpoint on loopback unless asked otherwise.
const DefaultListen = "127.0.0.1:9725"

func newServeCmd(e *env) *cobra.Command {
	var cfg daemon.Config
	var logFormat string
	var dnsServers []string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: enforce, repair drift, record blocked attempts, serve metrics",
		Long: `Run the smtpguard daemon in the foreground (systemd runs it; see install-service).

At start it makes the kernel match the stored policy. While it runs it restores
smtpguard's rules within milliseconds when anyone flushes or edits them, follows
policy changes made with the CLI, re-resolves allowed groups when /etc/passwd or
/etc/group change, records every blocked attempt with the user who made it (see
'smtpguard events'), and serves Prometheus metrics at http://ADDR/metrics.

Stopping the daemon leaves the restriction in force; only 'smtpguard disable'
lifts it.`,
		Example: `  smtpguard serve
  smtpguard serve --listen 127.0.0.1:9725 --retention 720h`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Retention < 0 || cfg.VerifyInterval < 0 {
				return usagef("--retention and --verify-interval must be positive")
			}
			ctx := cmd.Context()
			var handler slog.Handler
			opts := &slog.HandlerOptions{Level: slog.LevelInfo}
			if e.verbose {
				opts.Level = slog.LevelDebug
			}
			switch logFormat {
			case "text":
				handler = slog.NewTextHandler(e.stdio.Err, opts)
			case "json":
				handler = slog.NewJSONHandler(e.stdio.Err, opts)
			default:
				return usagef("unknown --log-format %q: use text or json", logFormat)
			}
			logger := slog.New(handler)
			for _, srv := range dnsServers {
				if _, err := netip.ParseAddrPort(srv); err != nil {
					return usagef("--dns-server %q: want ADDRESS:PORT, e.g. 127.0.0.1:53", srv)
				}
			}
			if len(dnsServers) > 0 {
				e.resolver = &resolve.Resolver{Servers: dnsServers}
			}
			eng, err := e.engineWithLogger(ctx, logger)
			if err != nil {
				return err
			}
			defer eng.Close()
			cfg.Engine, cfg.Logger = eng, logger
			d, err := daemon.New(cfg)
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", DefaultListen, "address for /metrics and /healthz (\"\" to serve nothing)")
	cmd.Flags().DurationVar(&cfg.Retention, "retention", 30*24*time.Hour, "keep blocked-attempt events this long")
	cmd.Flags().DurationVar(&cfg.VerifyInterval, "verify-interval", 30*time.Second, "also verify the kernel rules this often (changes are noticed at once anyway)")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format on stderr: text or json")
	cmd.Flags().DurationVar(&cfg.DNSMinTTL, "dns-min-ttl", 30*time.Second, "re-resolve exception host names no more often than this, whatever their TTL")
	cmd.Flags().DurationVar(&cfg.DNSMaxTTL, "dns-max-ttl", time.Hour, "re-resolve exception host names at least this often")
	cmd.Flags().StringSliceVar(&dnsServers, "dns-server", nil, "nameserver ADDRESS:PORT for exception host names (default: /etc/hosts, then /etc/resolv.conf)")
	cmd.Flags().StringVar(&cfg.NotifyCommand, "notify-command", "", "run this for users whose connections were blocked: args USER DESTINATION:PORT COUNT, JSON on stdin")
	cmd.Flags().DurationVar(&cfg.NotifyInterval, "notify-interval", 10*time.Minute, "notify each user at most this often")
	return cmd
}
