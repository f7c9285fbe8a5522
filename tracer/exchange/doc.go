// Package exchange reads finished journeys as the conversations they belong
// to: it links each TCP retransmission to the earlier journey it repeats,
// and pairs requests with their responses (TCP and UDP) to split the time a
// client waits into the network's share and the server's.
//
// It is a stage of the pipeline (tracer/pipeline): Stage wraps a sink, sees
// every journey before it and hands it on. Like every sink it sees journeys
// in the order the driver finishes them and takes its time from the
// journeys alone (kernel monotonic ns), never from a clock, so live tracing
// and a replayed recording give the same links and the same exchanges.
// It is pure Go: journeys in, links and exchanges out.
//
// # Retransmissions
//
// A TCP segment that occupies sequence space (data, SYN or FIN) and is sent
// again in the same flow from the same place with the same sequence number
// is a retransmission of the earlier one (Linker). Whether a segment
// carries data is decided without its payload length, which the events do
// not carry: Linux sets PSH on the last segment of every write and on no
// segment without data, and a segment longer than the largest header (TCP
// options are at most 40 bytes) carries data; a short segment without PSH is
// taken as a bare ACK.
//
// # Exchanges
//
// The server of a TCP connection is the side that received the SYN (or,
// for a connection whose start was not seen, the side with the lower port).
// Everything is measured where the server's host view is: the hop where a
// request arrived (the server's eth0, or the host veth toward it) and the
// hop a response left from. A request is the client's data up to a segment
// with PSH (one write); each server write that begins while requests are
// waiting answers the oldest one, which pairs pipelined requests with their
// responses in order; server data while nothing waits continues the last
// response. A request that the server had before its last answer began and
// that was still waiting when the client wrote again was part of that
// answer's request (a request written in two writes) and is dropped. Per
// exchange:
//
//	request network time   the request's last segment, from its first
//	                       transmission by the client to its arrival at the
//	                       server (a retransmission's delay included)
//	server time            that arrival to the first response segment
//	                       leaving the server
//	response network time  that segment leaving to its arrival at the client
//	                       (again from the first transmission)
//
// The handshake is an exchange of its own: SYN in to SYN-ACK out at the
// server. A UDP datagram arriving at a server and a datagram leaving it on
// the reversed 5-tuple within Config.UDPWindow are a request and its
// response (DNS and the like), paired oldest first.
//
// All state is bounded (Config) and forgotten after a while: a connection
// after Config.Idle without a packet, a segment after Config.RetransmitWindow.
package exchange
