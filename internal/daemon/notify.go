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
	"github.com/smtpguard/smtpguard/internal/webhook"
)

// notifyTimeout bounds one run of the notify command.
const notifyTimeout = 10 * time.Second

// EventBlocked is the "event" of a Notification: an aggregate of refused
// attempts (its Action says blocked or rate-limited).
const EventBlocked = "blocked"

// Notification is what the notify command receives as JSON on stdin for
// blocked attempts; the user, destination and count are also its
// arguments. The webhook receives the same object with "host" added.
type Notification struct {
	Event        string    `json:"event"` // EventBlocked
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

// The webhook's bodies: the notify command's JSON and the host it is from,
// so one receiver can serve a fleet.
type blockedPayload struct {
	Host string `json:"host"`
	Notification
}

type holdPayload struct {
	Host string `json:"host"`
	HoldNotice
}

// userLimit lets each uid through at most once per interval: the
// per-user rate limit of blocked-attempt notifications, shared by the
// notify command and the webhook so both see the same ones.
type userLimit struct {
	interval time.Duration

	mu   sync.Mutex // protects last
	last map[uint32]time.Time
}

// allow reports whether uid may be notified now, and if so starts its
// interval.
func (l *userLimit) allow(uid uint32, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last, ok := l.last[uid]; ok && now.Sub(last) < l.interval {
		return false
	}
	l.last[uid] = now
	return true
}

// commandRun is one run of the notify command.
type commandRun struct {
	args []string
	body []byte
}

// notifier tells the administrator about blocked users (at most once per
// interval per uid) and about holds and releases (every one): through the
// notify command, one run at a time, and through the webhook. Neither ever
// blocks the event path: what does not fit in a queue is dropped and
// counted.
type notifier struct {
	command string          // "" without --notify-command
	webhook *webhook.Sender // nil without --webhook
	host    string          // in webhook bodies
	limit   userLimit
	queue   chan commandRun
	log     *slog.Logger
	metrics *metrics

	// suppressed counts notifications skipped because the user was notified
	// within the interval.
	suppressed atomic.Int64
}

func newNotifier(command string, hook *webhook.Sender, host string, interval time.Duration, log *slog.Logger, m *metrics) *notifier {
	return &notifier{command: command, webhook: hook, host: host, limit: userLimit{interval: interval, last: map[uint32]time.Time{}},
		queue: make(chan commandRun, 64), log: log, metrics: m}
}

// offer notifies of a recorded aggregate unless the user was notified
// recently.
func (n *notifier) offer(e store.Event) {
	if n == nil || e.Action == enforce.ActionLogged {
		return
	}
	if !n.limit.allow(e.UID, time.Now()) {
		n.suppressed.Add(1)
		return
	}
	note := Notification{Event: EventBlocked, UID: e.UID, User: e.User, Destination: e.Address, Port: e.Port, Count: e.Count,
		Action: e.Action, LastSeen: e.LastSeen, AllowCommand: engine.AllowCommand(e), Process: e.Process}
	user := userArg(note.User, note.UID)
	n.fan(EventBlocked, []string{user, note.Destination + ":" + strconv.Itoa(int(note.Port)), strconv.FormatInt(note.Count, 10)},
		note, blockedPayload{Host: n.host, Notification: note})
}

// hold notifies of a hold or release; these are never rate limited (they
// are few, and each one changes what a user may do).
func (n *notifier) hold(h HoldNotice) {
	if n == nil {
		return
	}
	n.fan(h.Event, []string{userArg(h.User, h.UID), h.Event}, h, holdPayload{Host: n.host, HoldNotice: h})
}

// fan queues one notification for the command (args, JSON of cmdBody on
// stdin) and the webhook (JSON of hookBody).
func (n *notifier) fan(event string, args []string, cmdBody, hookBody any) {
	if n.command != "" {
		body, err := json.Marshal(cmdBody)
		if err != nil {
			n.log.Error("notification cannot be encoded", "event", event, "err", err)
			return
		}
		select {
		case n.queue <- commandRun{args: args, body: body}:
		default:
			n.metrics.dropped.WithLabelValues("notify").Inc()
		}
	}
	if n.webhook != nil {
		n.webhook.Send(event, hookBody) // a full queue is counted by the sender's Failed
	}
}

func userArg(user string, uid uint32) string {
	if user == "" {
		return strconv.FormatUint(uint64(uid), 10)
	}
	return user
}

// run delivers until ctx ends: the webhook in a goroutine of its own, the
// command here.
func (n *notifier) run(ctx context.Context) {
	var wg sync.WaitGroup
	if n.webhook != nil {
		wg.Go(func() { n.webhook.Run(ctx) })
	}
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-n.queue:
			n.exec(ctx, r)
		}
	}
}

func (n *notifier) exec(ctx context.Context, r commandRun) {
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.command, r.args...)
	cmd.Stdin = bytes.NewReader(r.body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.log.Warn("notify command failed", "command", n.command, "user", r.args[0], "err", err, "output", string(bytes.TrimSpace(out)))
	}
}

// NotifyHold tells the webhook and the notify command that a uid was held
// or released (HoldNotice.Event: enforce.ActionHeld or HoldReleased). It
// never blocks and is safe from any goroutine; without --webhook and
// --notify-command it does nothing.
func (d *Daemon) NotifyHold(h HoldNotice) {
	d.rec.notify.hold(h)
}
