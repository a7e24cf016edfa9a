// Package resolvetest is a tiny authoritative DNS server for tests: it answers
// A and AAAA questions from a table the test can change while it runs.
package resolvetest

import (
	"net"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/net/dns/dnsmessage"
)

// Server answers from its table; names it does not know get NXDOMAIN.
type Server struct {
	mu      sync.Mutex // protects the following fields
	records map[string][]netip.Addr
	ttl     uint32
	fail    bool
	queries int
}

// New returns a server answering with the given TTL in seconds.
func New(ttl uint32) *Server { return &Server{records: map[string][]netip.Addr{}, ttl: ttl} }

// Set replaces a name's addresses.
func (s *Server) Set(name string, addrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	s.records[strings.ToLower(strings.TrimSuffix(name, "."))] = out
}

// Fail makes the server answer SERVFAIL (true) or normally (false).
func (s *Server) Fail(fail bool) {
	s.mu.Lock()
	s.fail = fail
	s.mu.Unlock()
}

// Queries counts the questions answered so far.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// Serve answers on pc until it is closed.
func (s *Server) Serve(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var req dnsmessage.Message
		if err := req.Unpack(buf[:n]); err != nil || len(req.Questions) != 1 {
			continue
		}
		resp := s.answer(req)
		if out, err := resp.Pack(); err == nil {
			pc.WriteTo(out, addr)
		}
	}
}

func (s *Server) answer(req dnsmessage.Message) dnsmessage.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	q := req.Questions[0]
	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: req.ID, Response: true, Authoritative: true, RecursionDesired: req.RecursionDesired},
		Questions: req.Questions,
	}
	if s.fail {
		resp.RCode = dnsmessage.RCodeServerFailure
		return resp
	}
	addrs, ok := s.records[strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))]
	if !ok {
		resp.RCode = dnsmessage.RCodeNameError
		return resp
	}
	for _, a := range addrs {
		h := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: s.ttl}
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			h.Type = dnsmessage.TypeA
			resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AResource{A: a.As4()}})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			h.Type = dnsmessage.TypeAAAA
			resp.Answers = append(resp.Answers, dnsmessage.Resource{Header: h, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	return resp
}
