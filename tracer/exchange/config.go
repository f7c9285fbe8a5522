package exchange

import "time"

// Config bounds what the linker and the pairing keep. Zero fields take the
// defaults.
type Config struct {
	// RetransmitWindow is how long a sent segment is remembered to
	// recognise its retransmission. Default 2 minutes: TCP backs off to
	// about that.
	RetransmitWindow time.Duration
	// MaxSegments caps the segments remembered; past it the oldest are
	// forgotten. Default 65536.
	MaxSegments int
	// UDPWindow is how long a UDP request waits for its response.
	// Default 2s.
	UDPWindow time.Duration
	// Idle is how long a connection (or UDP flow) without a packet is
	// kept. Default 5 minutes.
	Idle time.Duration
	// ResponseWait is how long an exchange waits for its response to
	// reach the client (the first response segment was lost and its
	// retransmission is awaited); then it goes out without a response
	// network time. Default 5s.
	ResponseWait time.Duration
	// MaxConns caps tracked TCP connections and UDP flows each; past it
	// the longest idle are forgotten. Default 65536.
	MaxConns int
}

// Defaults for zero Config fields.
const (
	DefaultRetransmitWindow = 2 * time.Minute
	DefaultMaxSegments      = 1 << 16
	DefaultUDPWindow        = 2 * time.Second
	DefaultIdle             = 5 * time.Minute
	DefaultResponseWait     = 5 * time.Second
	DefaultMaxConns         = 1 << 16
)

func (c Config) withDefaults() Config {
	if c.RetransmitWindow <= 0 {
		c.RetransmitWindow = DefaultRetransmitWindow
	}
	if c.MaxSegments <= 0 {
		c.MaxSegments = DefaultMaxSegments
	}
	if c.UDPWindow <= 0 {
		c.UDPWindow = DefaultUDPWindow
	}
	if c.Idle <= 0 {
		c.Idle = DefaultIdle
	}
	if c.ResponseWait <= 0 {
		c.ResponseWait = DefaultResponseWait
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	return c
}
