package web

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/store"
)

// eventQuery is the filter and order of the blocked attempts page, its API
// and its export, read from the same query parameters so that a page's
// export link selects exactly what the page shows (all pages of it).
type eventQuery struct {
	User   string // names starting with this
	UID    string // one uid exactly ("By user" links)
	Dest   string // destinations starting with this
	Port   string
	Action string
	Sort   string // store.SortTime or store.SortCount
	Since  string // a window like "24h"; "" for everything kept
	// Unit is one systemd unit exactly; Container a container id's start
	// (or an LXC name).
	Unit, Container string
	Ref             string // the reference an explain-mode refusal quoted

	uid  *uint32
	port uint16
}

// eventActions are the actions an attempt can have.
func eventActions() []string {
	return []string{"blocked", "logged", "redirected", "explained", "rate-limited", "held"}
}

// parseEventQuery reads and checks the filter parameters.
func parseEventQuery(q url.Values) (eventQuery, error) {
	eq := eventQuery{
		User: strings.TrimSpace(q.Get("user")), UID: strings.TrimSpace(q.Get("uid")),
		Dest: strings.TrimSpace(q.Get("destination")), Port: strings.TrimSpace(q.Get("port")),
		Action: q.Get("action"), Sort: q.Get("sort"), Since: q.Get("since"),
		Unit: strings.TrimSpace(q.Get("unit")), Container: strings.TrimSpace(q.Get("container")),
		Ref: strings.TrimSpace(q.Get("ref")),
	}
	if eq.UID != "" {
		n, err := strconv.ParseUint(eq.UID, 10, 32)
		if err != nil {
			return eq, badRequest("uid: want a number, not %q", eq.UID)
		}
		u := uint32(n)
		eq.uid = &u
	}
	if eq.Port != "" {
		n, err := strconv.ParseUint(eq.Port, 10, 16)
		if err != nil || n == 0 {
			return eq, badRequest("port: want a port number from 1 to 65535, not %q", eq.Port)
		}
		eq.port = uint16(n)
	}
	if eq.Action != "" && !slices.Contains(eventActions(), eq.Action) {
		return eq, badRequest("action: want one of %s, not %q", strings.Join(eventActions(), ", "), eq.Action)
	}
	switch eq.Sort {
	case "", store.SortTime:
		eq.Sort = store.SortTime
	case store.SortCount:
	default:
		return eq, badRequest("sort: want %q or %q, not %q", store.SortTime, store.SortCount, eq.Sort)
	}
	if eq.Since != "" {
		if _, err := parseWindow(eq.Since); err != nil {
			return eq, badRequest("since: %v", err)
		}
	}
	return eq, nil
}

// filter is the store filter for id: a reseller only ever sees their users.
func (eq eventQuery) filter(id *identity, now time.Time) store.EventFilter {
	f := id.eventFilter(store.EventFilter{}, "")
	if eq.Since != "" {
		d, _ := parseWindow(eq.Since) // checked by parseEventQuery
		f.Since = now.Add(-d)
	}
	f.UserPrefix, f.UID, f.Destination, f.Port, f.Action, f.Sort = eq.User, eq.uid, eq.Dest, eq.port, eq.Action, eq.Sort
	f.Unit, f.Container = eq.Unit, eq.Container
	f.Ref = eq.Ref
	return f
}

// values is the query that selects the same rows, from the first page.
func (eq eventQuery) values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("user", eq.User)
	set("uid", eq.UID)
	set("destination", eq.Dest)
	set("port", eq.Port)
	set("action", eq.Action)
	if eq.Sort != store.SortTime {
		set("sort", eq.Sort)
	}
	set("since", eq.Since)
	set("unit", eq.Unit)
	set("container", eq.Container)
	set("ref", eq.Ref)
	return v
}

// with returns the query with one parameter changed ("" removes it).
func (eq eventQuery) with(key, val string) string {
	v := eq.values()
	if val == "" {
		v.Del(key)
	} else {
		v.Set(key, val)
	}
	return v.Encode()
}

// eventsView is the blocked attempts page.
type eventsView struct {
	Q       eventQuery
	Users   []string // a reseller's users, to pick from
	Windows []string
	Actions []string
	Rows    []eventRow
	ByUser  []userRow
	Shown   int
	Next    string // URL of the next page of the table, "" on the last
	First   string // URL of the first page, when this is not it
	Here    string // this page's URL, where "Allow this destination" returns
	// ExportCSV and ExportJSON download every page of this filter;
	// AllUsers is this filter without its uid.
	ExportCSV, ExportJSON, AllUsers string
	Chart                           chart
}

// eventRow is one attempt as the table shows it.
type eventRow struct {
	engine.EventView
	Covered bool // the policy lets it through now: no button
	// ProcLabel and ProcSource name the process and what it ran for, as
	// the CLI does; UnitLink and ContainerLink narrow the page to its unit
	// or container ("" when unknown).
	ProcLabel, ProcSource   string
	UnitLink, ContainerLink string
}

// userRow is one "By user" line with the link to that user's attempts.
type userRow struct {
	engine.UserTotal
	Link string
}

// eventsShown and auditShown are the rows of one page of the tables.
const (
	eventsShown = 200
	auditShown  = 200
)

func (s *Server) eventsPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	q := r.URL.Query()
	if !slices.Contains(chartWindows(), q.Get("since")) {
		q.Set("since", "24h") // the chart needs one of its windows
	}
	eq, err := parseEventQuery(q)
	if err != nil {
		return err
	}
	v := eventsView{Q: eq, Windows: chartWindows(), Actions: eventActions()}
	if !id.IsAdmin() {
		v.Users = id.account.Users
	}
	window, _ := parseWindow(eq.Since)
	now := s.cfg.Now()
	f := eq.filter(id, now)
	// Summed by the store: the page costs the same however many rows there are.
	fr := frameFor(now, window)
	counts, byUser, err := s.eng.EventSums(r.Context(), f, fr.start, fr.size, fr.n, maxChartUsers)
	if err != nil {
		return err
	}
	v.Chart = drawChart(fr, counts)
	for _, u := range byUser {
		v.ByUser = append(v.ByUser, userRow{UserTotal: u, Link: "/events?" + eq.with("uid", strconv.FormatUint(uint64(u.UID), 10))})
	}
	cursor := q.Get("cursor")
	f.Limit, f.After = eventsShown, cursor
	evs, next, err := s.eng.EventsPage(r.Context(), f)
	if err != nil {
		return pageError(err)
	}
	covered, err := s.eng.Covered(r.Context(), evs)
	if err != nil {
		return err
	}
	for i, ev := range evs {
		row := eventRow{EventView: ev, Covered: covered[i], ProcLabel: engine.ProcessLabel(ev.Process), ProcSource: engine.Source(ev.Process)}
		if ev.Unit != "" {
			row.UnitLink = "/events?" + eq.with("unit", ev.Unit)
		}
		if ev.Container != "" {
			row.ContainerLink = "/events?" + eq.with("container", ev.Container)
		}
		v.Rows = append(v.Rows, row)
	}
	v.Shown = len(v.Rows)
	base := eq.values()
	ex := eq.values()
	ex.Set("format", "csv")
	v.ExportCSV = "/api/v1/events/export?" + ex.Encode()
	ex.Set("format", "json")
	v.ExportJSON = "/api/v1/events/export?" + ex.Encode()
	v.AllUsers = "/events?" + eq.with("uid", "")
	if next != "" {
		nv := eq.values()
		nv.Set("cursor", next)
		v.Next = "/events?" + nv.Encode()
	}
	if cursor != "" {
		v.First = "/events?" + base.Encode()
		base.Set("cursor", cursor)
	}
	v.Here = "/events?" + base.Encode()
	s.render(w, r, http.StatusOK, "events", &page{Title: "Blocked attempts", Nav: "events", Me: id, Flash: s.takeFlash(r, id), Data: v})
	return nil
}

// backToEvents is where a form posted from the blocked attempts page returns:
// the same filtered view, when back is a path of that page and nothing else.
func backToEvents(back string) (string, bool) {
	u, err := url.Parse(back)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Path != "/events" || strings.ContainsAny(back, "\\\r\n") {
		return "", false
	}
	return "/events?" + u.Query().Encode(), true
}

// exportPage is the store page size of an export: memory stays bounded by
// one page however many rows the filter matches.
const exportPage = 1000

// apiEventsExport streams every attempt the filter matches, all pages, as
// CSV (format=csv, the default) or as one JSON array (format=json).
func (s *Server) apiEventsExport(w http.ResponseWriter, r *http.Request, id *identity) error {
	q := r.URL.Query()
	eq, err := parseEventQuery(q)
	if err != nil {
		return err
	}
	format := q.Get("format")
	if format == "" {
		format = "csv"
	}
	if format != "csv" && format != "json" {
		return badRequest("format: want csv or json, not %q", format)
	}
	f := eq.filter(id, s.cfg.Now())
	// Newest first whatever sort says: the events_page index serves that
	// order a page at a time, where the count order would sort every
	// matching row again for each page of a large export.
	f.Limit, f.Sort = exportPage, store.SortTime
	// The first page is read before anything is written, so a bad filter
	// or a failing store still gets a proper error answer.
	evs, next, err := s.eng.EventsPage(r.Context(), f)
	if err != nil {
		return pageError(err)
	}
	name := "smtpguard-events-" + s.cfg.Now().UTC().Format("20060102-150405") + "." + format
	h := w.Header()
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	var write func([]engine.EventView) error
	var finish func() error
	switch format {
	case "csv":
		h.Set("Content-Type", "text/csv; charset=utf-8")
		cw := csv.NewWriter(w)
		// The process columns come last, so readers of the first ten keep working.
		header := []string{"last_seen", "first_seen", "uid", "user", "destination", "port", "action", "count", "folded", "blocked_by",
			"pid", "comm", "exe", "cmdline", "cwd", "cgroup", "unit", "container", "pool", "source"}
		if err := cw.Write(header); err != nil {
			return err
		}
		write = func(evs []engine.EventView) error {
			for _, e := range evs {
				if err := cw.Write([]string{
					e.LastSeen.UTC().Format(time.RFC3339), e.FirstSeen.UTC().Format(time.RFC3339),
					strconv.FormatUint(uint64(e.UID), 10), e.User, e.Address, strconv.Itoa(int(e.Port)),
					e.Action, strconv.FormatInt(e.Count, 10), strconv.FormatBool(e.Folded), e.BlockedBy,
					strconv.FormatUint(uint64(e.PID), 10), csvText(e.Comm), csvText(e.Exe), csvText(e.Cmdline), csvText(e.Cwd),
					csvText(e.Cgroup), csvText(e.Unit), csvText(e.Container), csvText(e.Pool), csvText(engine.Source(e.Process)),
				}); err != nil {
					return err
				}
			}
			cw.Flush()
			return cw.Error()
		}
		finish = func() error { cw.Flush(); return cw.Error() }
	default:
		h.Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		first := true
		if _, err := w.Write([]byte("[")); err != nil {
			return err
		}
		write = func(evs []engine.EventView) error {
			for _, e := range evs {
				if !first {
					if _, err := w.Write([]byte(",")); err != nil {
						return err
					}
				}
				first = false
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}
		finish = func() error { _, err := w.Write([]byte("]\n")); return err }
	}
	flusher, _ := w.(http.Flusher)
	for page := 0; ; page++ {
		if err := write(evs); err != nil {
			s.log.Warn("export of blocked attempts cut short", "err", err)
			panic(http.ErrAbortHandler) // the client sees a broken download, not a short one
		}
		if flusher != nil {
			flusher.Flush()
		}
		if next == "" {
			break
		}
		f.After = next
		if evs, next, err = s.eng.EventsPage(r.Context(), f); err != nil {
			s.log.Warn("export of blocked attempts cut short", "err", err, "page", page+1)
			panic(http.ErrAbortHandler)
		}
	}
	if err := finish(); err != nil {
		s.log.Warn("export of blocked attempts cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// csvText keeps a spreadsheet from running a process's text as a formula:
// a process picks its own name and command line, so one starting with = + -
// @ (or a tab or carriage return) is prefixed with an apostrophe, as OWASP
// advises for CSV files.
func csvText(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// auditView is one page of the audit log page.
type auditView struct {
	Actor, Operation string // the filters
	Records          []store.AuditRecord
	Next             string // URL of the next, older page
	First            string // URL of the first page, when this is not it
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	q := r.URL.Query()
	v := auditView{Actor: strings.TrimSpace(q.Get("actor")), Operation: strings.TrimSpace(q.Get("operation"))}
	cursor := q.Get("cursor")
	recs, next, err := s.eng.AuditPage(r.Context(), store.AuditFilter{Limit: auditShown, After: cursor, ActorPrefix: v.Actor, Operation: v.Operation})
	if err != nil {
		return pageError(err)
	}
	v.Records = recs
	base := url.Values{}
	if v.Actor != "" {
		base.Set("actor", v.Actor)
	}
	if v.Operation != "" {
		base.Set("operation", v.Operation)
	}
	if next != "" {
		nv := url.Values{}
		for k, vals := range base {
			nv[k] = vals
		}
		nv.Set("cursor", next)
		v.Next = "/audit?" + nv.Encode()
	}
	if cursor != "" {
		v.First = "/audit?" + base.Encode()
	}
	s.render(w, r, http.StatusOK, "audit", &page{Title: "Audit log", Nav: "audit", Me: id, Data: v})
	return nil
}
