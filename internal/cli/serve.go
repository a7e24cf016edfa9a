package cli

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smtpguard/smtpguard/internal/daemon"
	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/mta"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/resolve"
	"github.com/smtpguard/smtpguard/internal/web"
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// DefaultListen keeps the metrics endpoint on loopback unless asked otherwise.
const DefaultListen = "127.0.0.1:9725"

func newServeCmd(e *env) *cobra.Command {
	var cfg daemon.Config
	var logFormat string
	var dnsServers []string
	var tlsCert, tlsKey, backend, tokenFile, cgroup string
	var webhookURL, webhookSecretFile string
	var explainPort uint16
	ownTable := true
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon: enforce, repair drift, record blocked attempts, serve metrics",
		Long: `Run the smtpguard daemon in the foreground (systemd runs it; see install-service).

At start it makes the kernel match the stored policy. While it runs it restores
smtpguard's rules within milliseconds when anyone flushes or edits them, follows
policy changes made with the CLI, re-resolves allowed groups when /etc/passwd or
/etc/group change, records every blocked attempt with the user who made it (see
'smtpguard events'), and serves Prometheus metrics at http://ADDR/metrics.

It also serves the web UI at http://ADDR/ and the JSON API at /api/v1/; sign in
with an account made by 'smtpguard account add'. The default address is
loopback only. Any other address is served over HTTPS only: with --tls-cert and
--tls-key, or else with a self-signed certificate generated once into the state
directory (its fingerprint is logged at start, to check in the browser).

Stopping the daemon leaves the restriction in force; only 'smtpguard disable'
lifts it.`,
		Example: `  smtpguard serve
  smtpguard serve --listen 127.0.0.1:9725 --retention 720h
  smtpguard serve --listen 0.0.0.0:9725                  # HTTPS, self-signed
  smtpguard serve --listen 203.0.113.5:9725 --tls-cert /etc/ssl/host.pem --tls-key /etc/ssl/host.key`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Retention < 0 || cfg.VerifyInterval < 0 {
				return usagef("--retention and --verify-interval must be positive")
			}
			ctx := cmd.Context()
			var d *daemon.Daemon // the web UI reports its state
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
			if (tlsCert == "") != (tlsKey == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			loopback, err := loopbackListen(cfg.Listen)
			if err != nil {
				return err
			}
			token, err := readMetricsToken(tokenFile)
			if err != nil {
				return err
			}
			cfg.MetricsToken, cfg.RequireMetricsToken = token, !loopback
			if cfg.WebhookURL, cfg.WebhookSecret, err = webhookConfig(webhookURL, webhookSecretFile); err != nil {
				return err
			}
			if cfg.WebhookURL != "" {
				if cfg.WebhookSecret == nil {
					logger.Warn("webhook requests are not signed: give --webhook-secret-file so the receiver can check they come from this daemon", "webhook", webhook.Redacted(cfg.WebhookURL))
				}
				if webhookInTheClear(cfg.WebhookURL) {
					logger.Warn("webhook bodies name users, addresses and command lines and go unencrypted over http:// to another host: use https://", "webhook", webhook.Redacted(cfg.WebhookURL))
				}
			}
			if !loopback && token == "" {
				logger.Warn("/metrics answers 401 to everyone: it names blocked users, and --listen is not loopback; give --metrics-token-file to let a scraper in", "listen", cfg.Listen)
			}
			// The daemon's own backends, never the remote ones: it is the
			// process the CLI talks to.
			cg, err := cgroupFlag(cgroup)
			if err != nil {
				return err
			}
			if explainPort == 0 {
				return usagef("--explain-port must be 1-65535")
			}
			if explainPort >= 1024 {
				logger.Warn("any user may listen on the explain port while the daemon does not (stopped, restarting), and would receive every blocked connection: choose one below 1024", "explain_port", explainPort)
			}
			kernel := daemon.NewKernel(enforce.InCgroup(e.opts.ServeBackends(logger, ownTable), cg))
			kernel.SetExplainPort(explainPort)
			cfg.ExplainPort = explainPort
			cfg.Hostname, _ = os.Hostname()
			defer kernel.Close() // the rules stay; an owned table is left orphaned and persistent
			eng, err := e.openForServe(ctx, logger, kernel.Backends(), cfg.Listen, loopback)
			if err != nil || eng == nil { // nil: stopped while the database was unreadable
				return err
			}
			defer eng.Close()
			e.stateDir = eng.StateDir() // checked, links resolved: the web certificate goes there too
			cfg.Kernel, cfg.StateDir = kernel, e.stateDir
			if backend != "" && backend != policy.BackendAuto {
				var names []string
				for _, b := range eng.Backends() {
					names = append(names, b.Name())
				}
				if !slices.Contains(names, backend) {
					return usagef("unknown --backend %q: use auto or %s", backend, strings.Join(names, "|"))
				}
			}
			cfg.Engine, cfg.Logger = eng, logger
			if cfg.Listen != "" {
				if tlsCert != "" || !loopback {
					if cfg.TLS, err = e.serveTLS(cfg.Listen, tlsCert, tlsKey, logger); err != nil {
						return err
					}
				}
				hostname, _ := os.Hostname()
				ui, err := web.New(web.Config{
					Engine: eng, Logger: logger, Secure: cfg.TLS != nil, Hostname: hostname, Backend: backend,
					Daemon: func() web.DaemonState { return webDaemonState(d) },
					// The MTA configuration the mail server page manages, as for 'smtpguard mta'.
					MTA: mta.Options{
						Root:             e.opts.MTA.Root,
						EximConfig:       e.opts.Getenv("SMTPGUARD_EXIM_CONFIG"),
						PostfixConfigDir: e.opts.Getenv("SMTPGUARD_POSTFIX_CONFIG_DIR"),
					},
				})
				if err != nil {
					return err
				}
				cfg.Web = ui
			}
			if cfg.Service, err = daemon.NewServiceNotifier(logger); err != nil {
				return err
			}
			if d, err = daemon.New(cfg); err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfg.Listen, "listen", DefaultListen, "address of the web UI, the API, /metrics and /healthz (\"\" to serve nothing); not loopback means HTTPS")
	cmd.Flags().StringVar(&backend, "backend", "", "backend an Enable from the web UI or API uses: "+backendChoices()+" (default: the one last enabled with)")
	cmd.Flags().Uint16Var(&explainPort, "explain-port", policy.DefaultExplainPort, "loopback port of the explain-mode SMTP responder (127.0.0.1 and ::1), while the policy is in explain mode")
	cmd.Flags().StringVar(&cgroup, "cgroup", "", "cgroup v2 directory the bpf backend attaches to when the policy names none (default: the cgroup2 root)")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM, chain included)")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "the private key of --tls-cert (PEM)")
	cmd.Flags().StringVar(&tokenFile, "metrics-token-file", "", "require \"Authorization: Bearer TOKEN\" on /metrics, TOKEN being this file's first line (always required when --listen is not loopback)")
	cmd.Flags().BoolVar(&ownTable, "own-table", true, "own the nftables table while running, so no other process can flush or edit it (kernels with owner+persist tables, Linux 6.9+); false: others can change it and the daemon repairs it")
	cmd.Flags().DurationVar(&cfg.Retention, "retention", 30*24*time.Hour, "keep blocked-attempt events this long")
	cmd.Flags().DurationVar(&cfg.VerifyInterval, "verify-interval", 30*time.Second, "also verify the kernel rules this often (changes are noticed at once anyway)")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "log format on stderr: text or json")
	cmd.Flags().DurationVar(&cfg.DNSMinTTL, "dns-min-ttl", 30*time.Second, "re-resolve exception host names no more often than this, whatever their TTL")
	cmd.Flags().DurationVar(&cfg.DNSMaxTTL, "dns-max-ttl", time.Hour, "re-resolve exception host names at least this often")
	cmd.Flags().StringSliceVar(&dnsServers, "dns-server", nil, "nameserver ADDRESS:PORT for exception host names (default: /etc/hosts, then /etc/resolv.conf)")
	cmd.Flags().StringVar(&cfg.NotifyCommand, "notify-command", "", "run this for users whose connections were blocked: args USER DESTINATION:PORT COUNT, JSON on stdin")
	cmd.Flags().DurationVar(&cfg.NotifyInterval, "notify-interval", 10*time.Minute, "notify each user at most this often (the command and the webhook alike)")
	cmd.Flags().StringVar(&webhookURL, "webhook", "", "POST JSON to this http(s) URL for blocked users (at most once per --notify-interval per user) and for every hold and release")
	cmd.Flags().StringVar(&webhookSecretFile, "webhook-secret-file", "", "sign webhook bodies with the secret on this file's first line (HMAC-SHA256 in X-Smtpguard-Signature; at least 16 characters; the file mode 0600)")
	return cmd
}

// readMetricsToken reads the bearer token /metrics requires from the first
// line of path ("" when no file is given). The token is never echoed.
func readMetricsToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	// The token guards the names of blocked users: a file others can read
	// gives it to every user on the host.
	secret, err := readSecretFile("--metrics-token-file", path)
	if err != nil {
		return "", err
	}
	token := string(secret)
	if len(token) < 16 {
		return "", usagef("--metrics-token-file %s: want a token of at least 16 characters on its first line (e.g. from 'openssl rand -hex 32')", path)
	}
	return token, nil
}

// loopbackListen reports whether addr only listens on loopback, where plain
// HTTP is acceptable. Host names other than localhost count as not loopback.
func loopbackListen(addr string) (bool, error) {
	if addr == "" {
		return true, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, usagef("--listen %q: want HOST:PORT, e.g. 127.0.0.1:9725", addr)
	}
	if host == "localhost" {
		return true, nil
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback(), nil
}

// serveTLS loads --tls-cert/--tls-key, or the self-signed certificate of the
// state directory, generating it on first use.
func (e *env) serveTLS(listen, certFile, keyFile string, logger *slog.Logger) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	if certFile != "" {
		if cert, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			return nil, fmt.Errorf("load --tls-cert %s and --tls-key %s: %w", certFile, keyFile, err)
		}
	} else {
		hosts := []string{"localhost", "127.0.0.1", "::1"}
		if name, err := os.Hostname(); err == nil {
			hosts = append([]string{name}, hosts...)
		}
		if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
			if a, err := netip.ParseAddr(host); err != nil || !a.IsUnspecified() {
				hosts = append(hosts, host)
			}
		}
		var created bool
		cert, created, err = web.SelfSignedCertificate(e.stateDir, hosts, time.Now())
		if err != nil {
			return nil, err
		}
		what := "using the self-signed certificate of the state directory"
		if created {
			what = "generated a self-signed certificate for the web UI"
		}
		logger.Info(what, "file", filepath.Join(e.stateDir, web.SelfSignedCertFile), "sha256", web.Fingerprint(cert),
			"hint", "check this fingerprint when the browser asks, or use --tls-cert/--tls-key")
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// webDaemonState is what the status page shows of the daemon d (nil while
// it is being set up).
func webDaemonState(d *daemon.Daemon) web.DaemonState {
	if d == nil {
		return web.DaemonState{}
	}
	st := d.State()
	return web.DaemonState{Recording: st.Recording, Repairs: st.Repairs.Count, LastRepair: st.Repairs.Last, LastProblems: st.Repairs.Problems}
}
