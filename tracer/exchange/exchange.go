package exchange

import (
	"net/netip"
	"time"

	"github.com/hoptrace/hoptrace/tracer/event"
)

// Exchange is one request and its response, or a TCP handshake. Times are
// kernel monotonic ns; "in" and "out" are at the server's side of the host
// (its eth0, or the host veth toward it), "sent" at the client's.
type Exchange struct {
	// Proto is event.ProtoTCP or event.ProtoUDP.
	Proto uint8
	// Handshake: the request is the SYN, the response the SYN-ACK.
	Handshake bool
	// Client and Server name the two sides: a container, a namespace, or
	// an address (the host, or beyond it).
	Client, Server string
	// ClientAddr and ServerAddr are the addresses as the server sees them.
	ClientAddr, ServerAddr netip.AddrPort
	// RequestID is the journey of the request's last segment to arrive
	// (0 when only the server's ACK showed it had arrived), ResponseID
	// that of the response's first segment.
	RequestID, ResponseID uint64
	// RequestSent is when the request's last segment was first sent;
	// RequestIn when it arrived at the server; ResponseOut when the first
	// response segment left the server; ResponseIn when it (or its
	// retransmission) reached the client, 0 when that was not seen.
	RequestSent, RequestIn, ResponseOut, ResponseIn uint64
	// Retransmits counts the TCP retransmissions seen in the connection
	// since the previous exchange.
	Retransmits int
}

// Port is the server's port.
func (e *Exchange) Port() uint16 { return e.ServerAddr.Port() }

// ProtoName is "tcp" or "udp".
func (e *Exchange) ProtoName() string {
	if e.Proto == event.ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// RequestTime is the request's network time: sent by the client to
// arrived at the server.
func (e *Exchange) RequestTime() time.Duration { return span(e.RequestSent, e.RequestIn) }

// ServerTime is the request's arrival at the server to the response
// leaving it.
func (e *Exchange) ServerTime() time.Duration { return span(e.RequestIn, e.ResponseOut) }

// ResponseTime is the response's network time, known when it was seen
// reaching the client.
func (e *Exchange) ResponseTime() (time.Duration, bool) {
	if e.ResponseIn == 0 {
		return 0, false
	}
	return span(e.ResponseOut, e.ResponseIn), true
}

// NetworkTime is the request's and the response's network time together,
// known when both are.
func (e *Exchange) NetworkTime() (time.Duration, bool) {
	r, ok := e.ResponseTime()
	return e.RequestTime() + r, ok
}

func span(from, to uint64) time.Duration {
	if to < from {
		return 0
	}
	return time.Duration(to - from)
}
