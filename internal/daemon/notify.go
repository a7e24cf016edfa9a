package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smtpguard/smtpguard/internal/enforce"
	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// notifyTimeout bounds one run of the notify command.
const notifyTimeout = 10 * time.Second

// Notification is what the notify command receives as JSON on stdin; the
// user, destination and count are also its arguments.
type Notification struct {
	UID          uint32    `json:"uid"`
	User         string    `json:"user"`
	Destination  string    `json:"destination"`
	Port         uint16    `json:"port"`
	Count        int64     `json:"count"`
	Action       string    `json:"action"`
	LastSeen     time.Time `json:"last_seen"`
	AllowCommand string    `json:"allow_command"`
	// Process is the process that made the last attempt: pid, comm, exe,
	// cmdline, cwd, cgroup, unit, container, pool (empty where the backend
	// cannot know).
	store.Process
}

// notifier runs the administrator's notify command for blocked users, at
// most once per interval per uid, one run at a time; what does not fit in
// its small queue is dropped and counted.
type notifier struct {
	command  string
	interval time.Duration
	queue    chan Notification
	log      *slog.Logger
	metrics  *metrics

	// suppressed counts notifications skipped because the user was notified
	// within the interval.
	suppressed atomic.Int64

	mu   sync.Mutex // protects last
	last map[uint32]time.Time
}

func newNotifier(command string, interval time.Duration, log *slog.Logger, m *metrics) *notifier {
	return &notifier{command: command, interval: interval, queue: make(chan Notification, 64), log: log, metrics: m, last: map[uint32]time.Time{}}
}

// offer queues a notification unless the user was notified recently.
func (n *notifier) offer(e store.Event) {
	if n == nil || e.Action == enforce.ActionLogged {
		return
	}
	n.mu.Lock()
	if last, ok := n.last[e.UID]; ok && time.Since(last) < n.interval {
		n.mu.Unlock()
		n.suppressed.Add(1)
		return
	}
	n.last[e.UID] = time.Now()
	n.mu.Unlock()
	note := Notification{UID: e.UID, User: e.User, Destination: e.Address, Port: e.Port, Count: e.Count,
		Action: e.Action, LastSeen: e.LastSeen, AllowCommand: engine.AllowCommand(e), Process: e.Process}
	select {
	case n.queue <- note:
	default:
		n.metrics.dropped.WithLabelValues("notify").Inc()
	}
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case note := <-n.queue:
			n.exec(ctx, note)
		}
	}
}

func (n *notifier) exec(ctx context.Context, note Notification) {
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	body, _ := json.Marshal(note)
	user := note.User
	if user == "" {
		user = strconv.FormatUint(uint64(note.UID), 10)
	}
	cmd := exec.CommandContext(ctx, n.command, user, note.Destination+":"+strconv.Itoa(int(note.Port)), strconv.FormatInt(note.Count, 10))
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.log.Warn("notify command failed", "command", n.command, "user", user, "err", err, "output", string(bytes.TrimSpace(out)))
	}
}
