package exchange

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// Printer writes one line per exchange, as text or as a JSON object
// (JSONLine); each line goes out in one Write as soon as it is made.
type Printer struct {
	w    io.Writer
	json bool
	// clock converts kernel monotonic time to wall time; loc is where to
	// show it (nil: local).
	clock event.Clock
	loc   *time.Location
	buf   []byte
}

// NewPrinter returns a printer of exchanges to w; wallOffsetNS is the
// capture's (or recording's) clock offset, as in render.Options.
func NewPrinter(w io.Writer, asJSON bool, wallOffsetNS int64, loc *time.Location) *Printer {
	if loc == nil {
		loc = time.Local
	}
	return &Printer{w: w, json: asJSON, clock: event.Clock{OffsetNS: wallOffsetNS}, loc: loc}
}

// JSONLine is an exchange as a JSON line. Times are ns: the *_ns durations,
// and the kernel monotonic instants *_at_ns; response_ns and
// response_in_at_ns are absent when the response was not seen reaching the
// client.
type JSONLine struct {
	Type       string `json:"type"` // "exchange"
	Kind       string `json:"kind"` // "request" or "handshake"
	Time       string `json:"time"` // wall time the request was sent, RFC 3339 with ns
	Proto      string `json:"proto"`
	Client     string `json:"client"`
	Server     string `json:"server"`
	Port       uint16 `json:"port"`
	ClientAddr string `json:"client_addr"` // as the server sees it
	ServerAddr string `json:"server_addr"`
	RequestID  uint64 `json:"request_id"` // journey IDs
	ResponseID uint64 `json:"response_id"`
	RequestNS  int64  `json:"request_ns"`
	ServerNS   int64  `json:"server_ns"`
	ResponseNS *int64 `json:"response_ns,omitempty"`
	// The instants the times are made of.
	RequestSentAtNS uint64 `json:"request_sent_at_ns"`
	RequestInAtNS   uint64 `json:"request_in_at_ns"`
	ResponseOutAtNS uint64 `json:"response_out_at_ns"`
	ResponseInAtNS  uint64 `json:"response_in_at_ns,omitempty"`
	Retransmits     int    `json:"retransmits"`
}

// Line builds e's JSON object.
func (p *Printer) Line(e *Exchange) *JSONLine {
	o := &JSONLine{
		Type: "exchange", Kind: kind(e),
		Time:  p.clock.Wall(e.RequestSent).In(p.loc).Format("2006-01-02T15:04:05.000000000Z07:00"),
		Proto: e.ProtoName(), Client: e.Client, Server: e.Server, Port: e.Port(),
		ClientAddr: e.ClientAddr.String(), ServerAddr: e.ServerAddr.String(),
		RequestID: e.RequestID, ResponseID: e.ResponseID,
		RequestNS: int64(e.RequestTime()), ServerNS: int64(e.ServerTime()),
		RequestSentAtNS: e.RequestSent, RequestInAtNS: e.RequestIn, ResponseOutAtNS: e.ResponseOut, ResponseInAtNS: e.ResponseIn,
		Retransmits: e.Retransmits,
	}
	if r, ok := e.ResponseTime(); ok {
		n := int64(r)
		o.ResponseNS = &n
	}
	return o
}

func kind(e *Exchange) string {
	if e.Handshake {
		return "handshake"
	}
	return "request"
}

// Exchange writes one exchange:
//
//	12:00:01.123456 tcp client -> web:8080  request 31us  server 50.2ms  response 28us  (172.17.0.2:40000 > 172.17.0.3:8080, #12 -> #15)
//	12:00:01.100000 tcp client -> web:8080  handshake  SYN 30us  server 12us  SYN-ACK 28us  (172.17.0.2:40000 > 172.17.0.3:8080, #9 -> #10)
func (p *Printer) Exchange(e *Exchange) error {
	b := p.buf[:0]
	if p.json {
		var err error
		if b, err = json.Marshal(p.Line(e)); err != nil {
			return fmt.Errorf("encode exchange: %w", err)
		}
		b = append(b, '\n')
	} else {
		req, resp := "request", "response"
		b = p.clock.Wall(e.RequestSent).In(p.loc).AppendFormat(b, "15:04:05.000000")
		b = fmt.Appendf(b, " %s %s -> %s:%d  ", e.ProtoName(), e.Client, e.Server, e.Port())
		if e.Handshake {
			b = append(b, "handshake  "...)
			req, resp = "SYN", "SYN-ACK"
		}
		b = fmt.Appendf(b, "%s %s  server %s  %s ", req, render.FormatDuration(e.RequestTime()), render.FormatDuration(e.ServerTime()), resp)
		if r, ok := e.ResponseTime(); ok {
			b = append(b, render.FormatDuration(r)...)
		} else {
			b = append(b, "not seen arriving"...)
		}
		if e.Retransmits > 0 {
			b = fmt.Appendf(b, "  retransmits %d", e.Retransmits)
		}
		b = fmt.Appendf(b, "  (%s > %s, #%d -> #%d)\n", e.ClientAddr, e.ServerAddr, e.RequestID, e.ResponseID)
	}
	p.buf = b
	_, err := p.w.Write(b)
	return err
}
