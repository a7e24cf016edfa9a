package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/policy"
	"github.com/smtpguard/smtpguard/internal/store"
)

// maxBody bounds request bodies: every request we accept is small.
const maxBody = 64 << 10

// maxAPIPage caps every list answer of the API: limit=0, no limit or a
// larger one mean this many. Lists are read a page at a time, so what one
// request costs does not depend on how large the table has grown (issue 12:
// five parallel ?limit=0 calls pushed the daemon to 793 MB).
const maxAPIPage = 1000

// resellerStatus is what a reseller may see of the status: no other
// customers' user names, no MTA or uid details.
type resellerStatus struct {
	Enabled       bool          `json:"enabled"`
	Backend       string        `json:"backend"`
	Mode          string        `json:"mode"`
	Ports         []uint16      `json:"ports"`
	AllowedUsers  []string      `json:"allowed_users"`  // the reseller's own users that are allowed
	AllowedGroups []string      `json:"allowed_groups"` // always empty: groups span customers
	AllowLocal    bool          `json:"allow_local"`
	Kernel        engine.Kernel `json:"kernel"`
	UpdatedAt     *time.Time    `json:"updated_at,omitempty"`
	UpdatedBy     string        `json:"updated_by,omitempty"`
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request, id *identity) error {
	st, err := s.eng.Status(r.Context())
	if err != nil {
		return err
	}
	if id.IsAdmin() {
		writeJSON(w, http.StatusOK, st)
		return nil
	}
	writeJSON(w, http.StatusOK, resellerView(st, id))
	return nil
}

func resellerView(st engine.Status, id *identity) resellerStatus {
	rs := resellerStatus{
		Enabled: st.Enabled, Backend: st.Backend, Mode: st.Mode, Ports: st.Ports,
		AllowedUsers: []string{}, AllowedGroups: []string{}, AllowLocal: st.AllowLocal,
		Kernel: st.Kernel, UpdatedAt: st.UpdatedAt, UpdatedBy: st.UpdatedBy,
	}
	for _, u := range st.AllowedUsers {
		for _, own := range id.account.Users {
			if u == own {
				rs.AllowedUsers = append(rs.AllowedUsers, u)
			}
		}
	}
	return rs
}

// mutationResult mirrors the CLI's --json answer to a change.
type mutationResult struct {
	Changed bool   `json:"changed"`
	Message string `json:"message"`
}

func (s *Server) apiEnable(w http.ResponseWriter, r *http.Request, id *identity) error {
	res, err := s.enable(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mutationResult{res.Changed, res.Message})
	return nil
}

func (s *Server) apiDisable(w http.ResponseWriter, r *http.Request, id *identity) error {
	res, err := s.eng.Disable(r.Context(), id.actor())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mutationResult{res.Changed, res.Message})
	return nil
}

// enable turns the restriction on with the daemon's backend: the configured
// one, else the one the stored policy was last enabled with.
func (s *Server) enable(ctx context.Context, id *identity) (engine.Result, error) {
	backend := s.cfg.Backend
	if backend == "" {
		p, _, err := s.st.Policy(ctx)
		if err != nil {
			return engine.Result{}, err
		}
		backend = p.Backend
	}
	return s.eng.Enable(ctx, id.actor(), backend)
}

// allowedList is GET /api/v1/allowed.
type allowedList struct {
	Users      []string                 `json:"users"`
	Groups     []string                 `json:"groups"`
	Exceptions []engine.ExceptionStatus `json:"exceptions"`
	UserRates  map[string]string        `json:"user_rates"`  // own rate limits of the users listed
	GroupRates map[string]string        `json:"group_rates"` // and of the groups
}

// allowedPage is allowedList with the cursor of the next page.
type allowedPage struct {
	allowedList
	Next string `json:"next"` // "" on the last page
}

func (s *Server) apiAllowed(w http.ResponseWriter, r *http.Request, id *identity) error {
	f, err := listFilter(r.URL.Query())
	if err != nil {
		return err
	}
	v, next, err := s.eng.AllowedPage(r.Context(), f.cursor, f.limit)
	if err != nil {
		return pageError(err)
	}
	setNext(w, r, next)
	writeJSON(w, http.StatusOK, allowedPage{allowedList{Users: v.Users, Groups: v.Groups, Exceptions: v.Exceptions, UserRates: v.UserRates, GroupRates: v.GroupRates}, next})
	return nil
}

// principalBody names what POST and DELETE /api/v1/allowed act on: a user or
// group, and optionally one destination (an exception) on some ports.
type principalBody struct {
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	To    string `json:"to,omitempty"`
	Ports []int  `json:"ports,omitempty"`
	// Rate is the allowance's own rate limit ("100/h", "off" or
	// "default"); absent keeps it as it is.
	Rate *string `json:"rate,omitempty"`
}

// parseKind reads "user" or "group".
func parseKind(s string) (policy.PrincipalKind, error) {
	switch s {
	case "user":
		return policy.KindUser, nil
	case "group":
		return policy.KindGroup, nil
	}
	return "", badRequest("kind must be \"user\" or \"group\", not %q", s)
}

func (s *Server) apiAllow(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.apiAllowRevoke(w, r, id, true)
}

func (s *Server) apiRevoke(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.apiAllowRevoke(w, r, id, false)
}

func (s *Server) apiAllowRevoke(w http.ResponseWriter, r *http.Request, id *identity, allow bool) error {
	var b principalBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	if !allow && len(b.Ports) > 0 {
		return badRequest("ports cannot be given when revoking: an exception is revoked by its destination")
	}
	if !allow && b.Rate != nil {
		return badRequest("rate cannot be given when revoking")
	}
	parts := make([]string, len(b.Ports))
	for i, p := range b.Ports {
		parts[i] = strconv.Itoa(p)
	}
	res, err := s.allow(r.Context(), id, allow, b.Kind, b.Name, b.To, strings.Join(parts, ","), b.Rate)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, mutationResult{res.Changed, res.Message})
	return nil
}

// allow allows or revokes a user or group, or one of its exceptions when to
// names a destination. ports is "" or a list like "465,587"; rate, when not
// nil, is the allowance's own rate limit.
func (s *Server) allow(ctx context.Context, id *identity, allow bool, kindName, name, to, ports string, rate *string) (engine.Result, error) {
	kind, err := parseKind(kindName)
	if err != nil {
		return engine.Result{}, err
	}
	name, to, ports = strings.TrimSpace(name), strings.TrimSpace(to), strings.TrimSpace(ports)
	if name == "" {
		return engine.Result{}, badRequest("enter the %s's name or number", kind)
	}
	if ports != "" && to == "" {
		return engine.Result{}, badRequest("ports need a destination: an exception is for one destination")
	}
	switch {
	case allow && to != "":
		return s.eng.AllowExceptionWith(ctx, id.actor(), kind, name, to, ports, engine.AllowOptions{Rate: rate})
	case allow:
		return s.eng.AllowWith(ctx, id.actor(), kind, name, engine.AllowOptions{Rate: rate})
	case to != "":
		return s.eng.RevokeException(ctx, id.actor(), kind, name, to)
	default:
		return s.eng.Revoke(ctx, id.actor(), kind, name)
	}
}

// settings is GET and PUT /api/v1/settings. In a PUT, a missing field keeps
// its value.
type settings struct {
	Ports      []uint16 `json:"ports"`
	Mode       string   `json:"mode"`
	AllowLocal bool     `json:"allow_local"`
	RateLimit  string   `json:"rate_limit"` // "100/h" or "off"
	HoldAfter  string   `json:"hold_after"` // "10/m" or "off"
	HoldFor    string   `json:"hold_for"`   // "1h", or "0": until released
}

type settingsBody struct {
	Ports      *[]int  `json:"ports"`
	Mode       *string `json:"mode"`
	AllowLocal *bool   `json:"allow_local"`
	RateLimit  *string `json:"rate_limit"`
	HoldAfter  *string `json:"hold_after"`
	HoldFor    *string `json:"hold_for"`
}

func (s *Server) currentSettings(ctx context.Context) (settings, error) {
	p, _, err := s.st.Policy(ctx)
	if err != nil {
		return settings{}, err
	}
	hs, err := s.eng.HoldSettings(ctx)
	if err != nil {
		return settings{}, err
	}
	return settings{Ports: p.Ports, Mode: string(p.Mode), AllowLocal: p.AllowLocal, RateLimit: p.RateLimit.String(),
		HoldAfter: hs.After.String(), HoldFor: engine.HoldForValue(hs.For)}, nil
}

func (s *Server) apiSettings(w http.ResponseWriter, r *http.Request, id *identity) error {
	cur, err := s.currentSettings(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cur)
	return nil
}

func (s *Server) apiPutSettings(w http.ResponseWriter, r *http.Request, id *identity) error {
	var b settingsBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	var ch settingsChange
	if b.Ports != nil {
		parts := make([]string, len(*b.Ports))
		for i, p := range *b.Ports {
			parts[i] = strconv.Itoa(p)
		}
		ports := strings.Join(parts, ",")
		ch.ports = &ports
	}
	if b.AllowLocal != nil {
		v := map[bool]string{true: "on", false: "off"}[*b.AllowLocal]
		ch.allowLocal = &v
	}
	ch.mode, ch.rateLimit, ch.holdAfter, ch.holdFor = b.Mode, b.RateLimit, b.HoldAfter, b.HoldFor
	msgs, changed, err := s.applySettings(r.Context(), id, ch)
	if err != nil {
		return err
	}
	cur, err := s.currentSettings(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Changed  bool     `json:"changed"`
		Messages []string `json:"messages"`
		settings
	}{changed, msgs, cur})
	return nil
}

// settingsChange holds the settings to change, as the CLI would type them.
type settingsChange struct {
	ports, mode, allowLocal, rateLimit, holdAfter, holdFor *string
}

// applySettings changes the settings given as one engine operation: every
// field is validated first, so bad input changes nothing, and the change is
// one transaction with one audit record.
func (s *Server) applySettings(ctx context.Context, id *identity, ch settingsChange) ([]string, bool, error) {
	res, err := s.eng.SetSettings(ctx, id.actor(), engine.Settings{Ports: ch.ports, Mode: ch.mode, AllowLocal: ch.allowLocal, RateLimit: ch.rateLimit,
		HoldAfter: ch.holdAfter, HoldFor: ch.holdFor})
	if err != nil {
		return nil, false, err
	}
	return []string{res.Message}, res.Changed, nil
}

func (s *Server) apiEvents(w http.ResponseWriter, r *http.Request, id *identity) error {
	f, err := listFilter(r.URL.Query())
	if err != nil {
		return err
	}
	eq, err := parseEventQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ef := eq.filter(id, s.cfg.Now())
	ef.Limit, ef.After = f.limit, f.cursor
	evs, next, err := s.eng.EventsPage(r.Context(), ef)
	if err != nil {
		return pageError(err)
	}
	if evs == nil {
		evs = []engine.EventView{}
	}
	setNext(w, r, next)
	writeJSON(w, http.StatusOK, evs)
	return nil
}

func (s *Server) apiAudit(w http.ResponseWriter, r *http.Request, id *identity) error {
	f, err := listFilter(r.URL.Query())
	if err != nil {
		return err
	}
	q := r.URL.Query()
	recs, next, err := s.eng.AuditPage(r.Context(), store.AuditFilter{Since: f.since(s.cfg.Now()), Limit: f.limit, After: f.cursor,
		ActorPrefix: strings.TrimSpace(q.Get("actor")), Operation: strings.TrimSpace(q.Get("operation"))})
	if err != nil {
		return pageError(err)
	}
	if recs == nil {
		recs = []store.AuditRecord{}
	}
	setNext(w, r, next)
	writeJSON(w, http.StatusOK, recs)
	return nil
}

// setNext tells a client where the next page is, when there is one: the
// cursor in X-Next-Cursor and the whole URL as a Link with rel="next" (as
// GitHub's API does), so the lists stay the JSON arrays scripts already read.
func setNext(w http.ResponseWriter, r *http.Request, next string) {
	if next == "" {
		return
	}
	q := r.URL.Query()
	q.Set("cursor", next)
	w.Header().Set("X-Next-Cursor", next)
	w.Header().Set("Link", "<"+r.URL.Path+"?"+q.Encode()+`>; rel="next"`)
}

// pageError answers a cursor the store did not hand out with 400.
func pageError(err error) error {
	if errors.Is(err, store.ErrBadCursor) {
		return badRequest("cursor: %v", err)
	}
	return err
}

// filter is the since, limit and cursor query parameters of list endpoints.
type filter struct {
	window time.Duration // 0: everything kept
	limit  int           // 1 to maxAPIPage
	cursor string        // the "next" of the previous page
}

func (f filter) since(now time.Time) time.Time {
	if f.window == 0 {
		return time.Time{}
	}
	return now.Add(-f.window)
}

func listFilter(q url.Values) (filter, error) {
	f := filter{limit: maxAPIPage, cursor: q.Get("cursor")}
	if v := q.Get("since"); v != "" {
		d, err := parseWindow(v)
		if err != nil {
			return f, badRequest("since: %v", err)
		}
		f.window = d
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return f, badRequest("limit: want a number of rows, not %q", v)
		}
		if n > 0 && n < maxAPIPage {
			f.limit = n
		}
	}
	return f, nil
}

// parseWindow reads a duration like "90m", "24h" or "7d".
func parseWindow(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 3650 {
			return 0, errors.New("want a duration like 90m, 24h or 7d, not " + strconv.Quote(s))
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration like 90m, 24h or 7d, not " + strconv.Quote(s))
	}
	return d, nil
}

// decodeJSON reads a small JSON body strictly: unknown fields and trailing
// data are errors, as in policy files.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &httpError{code: http.StatusUnsupportedMediaType, msg: "send the body as Content-Type: application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: data after the object")
	}
	return nil
}
