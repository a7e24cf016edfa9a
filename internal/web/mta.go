package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/smtpguard/smtpguard/internal/engine"
	"github.com/smtpguard/smtpguard/internal/mta"
)

// mtaStatus is GET /api/v1/mta: what 'smtpguard mta status --json' prints,
// plus whether smtpguard can change the limits here.
type mtaStatus struct {
	mta.Info
	Managed bool   `json:"managed"`
	Reason  string `json:"reason,omitempty"` // why the limits are not managed
}

// mtaInfo reads the MTA and its limits. A host without an MTA smtpguard
// can manage is not an error: the answer says so.
func (s *Server) mtaInfo(ctx context.Context) (mtaStatus, engine.MTAReader, error) {
	m, err := s.eng.MTA(ctx, s.cfg.MTA)
	unsupported := errors.Is(err, mta.ErrUnsupported)
	if err != nil && !unsupported {
		return mtaStatus{}, nil, err
	}
	info, ierr := m.Info(ctx)
	st := mtaStatus{Info: info, Managed: !unsupported}
	if unsupported {
		st.Reason = err.Error()
	}
	if ierr != nil {
		return st, m, fmt.Errorf("read the %s configuration: %w", m.Name(), ierr)
	}
	return st, m, nil
}

func (s *Server) apiMTA(w http.ResponseWriter, r *http.Request, id *identity) error {
	st, _, err := s.mtaInfo(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// mtaBody is PUT /api/v1/mta; a missing field keeps its value.
type mtaBody struct {
	MaxConnections *int `json:"max_connections"`
	MaxPerHost     *int `json:"max_per_host"`
	Reserve        *int `json:"reserve"`
}

func (s *Server) apiPutMTA(w http.ResponseWriter, r *http.Request, id *identity) error {
	var b mtaBody
	if err := decodeJSON(w, r, &b); err != nil {
		return err
	}
	res, l, err := s.setMTA(r.Context(), id, b)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Changed bool       `json:"changed"`
		Message string     `json:"message"`
		Limits  mta.Limits `json:"limits"`
	}{res.Changed, res.Message, l})
	return nil
}

// setMTA changes the limits given, through the engine (validated by the MTA,
// restored on failure, audited).
func (s *Server) setMTA(ctx context.Context, id *identity, b mtaBody) (result mutationResult, l mta.Limits, err error) {
	res, l, err := s.eng.SetMTALimits(ctx, id.actor(), s.cfg.MTA, engine.MTAChange{MaxConnections: b.MaxConnections, MaxPerHost: b.MaxPerHost, Reserve: b.Reserve})
	if errors.Is(err, mta.ErrUnsupported) {
		return result, l, &httpError{code: http.StatusConflict, msg: "cannot set connection limits: " + err.Error()}
	}
	if err != nil {
		return result, l, err
	}
	return mutationResult{res.Changed, res.Message}, l, nil
}

// mtaView is the mail server page.
type mtaView struct {
	Status mtaStatus
	Form   mtaForm
}

type mtaForm struct{ MaxConnections, MaxPerHost, Reserve string }

func (s *Server) mtaPage(w http.ResponseWriter, r *http.Request, id *identity) error {
	return s.renderMTA(w, r, id, http.StatusOK, "", nil)
}

func (s *Server) renderMTA(w http.ResponseWriter, r *http.Request, id *identity, code int, errMsg string, f *mtaForm) error {
	st, _, err := s.mtaInfo(r.Context())
	if err != nil && errMsg == "" {
		return err
	}
	v := mtaView{Status: st}
	if f != nil {
		v.Form = *f
	} else {
		l := st.Limits
		v.Form = mtaForm{strconv.Itoa(l.MaxConnections), strconv.Itoa(l.MaxPerHost), strconv.Itoa(l.Reserve)}
	}
	s.render(w, r, code, "mta", &page{Title: "Mail server connection limit", Nav: "mta", Me: id, Flash: s.takeFlash(r, id), Error: errMsg, Data: v})
	return nil
}

func (s *Server) setMTAUI(w http.ResponseWriter, r *http.Request, id *identity) error {
	if err := parseForm(w, r); err != nil {
		return err
	}
	f := mtaForm{strings.TrimSpace(r.PostForm.Get("max_connections")), strings.TrimSpace(r.PostForm.Get("max_per_host")), strings.TrimSpace(r.PostForm.Get("reserve"))}
	var b mtaBody
	for _, field := range []struct {
		name, value string
		dst         **int
	}{
		{"maximum connections", f.MaxConnections, &b.MaxConnections},
		{"per host", f.MaxPerHost, &b.MaxPerHost},
		{"reserved", f.Reserve, &b.Reserve},
	} {
		if field.value == "" {
			continue
		}
		n, err := strconv.Atoi(field.value)
		if err != nil {
			return s.renderMTA(w, r, id, http.StatusBadRequest, fmt.Sprintf("%s: %q is not a whole number", field.name, field.value), &f)
		}
		*field.dst = &n
	}
	res, _, err := s.setMTA(r.Context(), id, b)
	if err != nil {
		msg, ok := userError(err)
		if !ok {
			return err
		}
		code, _ := classify(err)
		return s.renderMTA(w, r, id, code, msg, &f)
	}
	return s.doneWith(w, r, id, "/mta", flash{Tone: toneOf(res.Changed), Text: res.Message})
}
