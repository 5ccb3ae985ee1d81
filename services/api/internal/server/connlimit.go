package server

import (
	"net"
	"sync"
	"sync/atomic"
)

// connLimit is a listener that holds at most max connections open. A
// connection beyond the limit is accepted and closed at once, before a byte
// is read: its client fails fast (a reset or EOF, which Connect and gRPC
// clients report as unavailable) instead of waiting in the kernel's accept
// queue for a slot, and the server spends no goroutine, buffer or HTTP/2
// state on it.
//
// Admission bounds the calls; this bounds the connections that carry them,
// which cost memory even when idle (an HTTP/2 connection holds two
// goroutines, read and write buffers and flow-control windows). Without it a
// client fleet that dials a connection per call in flight — or one that
// redials in a storm when the server slows — grows the server's memory
// without limit.
type connLimit struct {
	net.Listener
	max int64
	*connCounts
}

// connCounts are the connections open and those refused, shared by every
// listener the server serves.
type connCounts struct {
	open    atomic.Int64
	refused atomic.Int64
}

func newConnLimit(ln net.Listener, max int64, counts *connCounts) *connLimit {
	return &connLimit{Listener: ln, max: max, connCounts: counts}
}

// Accept returns the next connection within the limit, closing those beyond
// it.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refused.Add(1)
			_ = c.Close()
			continue
		}
		return &limitedConn{Conn: c, l: l}, nil
	}
}

// limitedConn gives its slot back when closed, once.
type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
