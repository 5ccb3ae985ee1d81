package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// sniffMaxBytes bounds what the split listener reads of a connection before
// it knows where to send it: the client preface, its SETTINGS and the
// first request's headers, which MaxHeaderBytes bounds on the HTTP server.
const sniffMaxBytes = 64 << 10

// errSniffTooLong means a connection sent sniffMaxBytes without a request's
// headers.
var errSniffTooLong = errors.New("connection sent too much before its first request headers")

// splitListener shares one port between two servers: native gRPC goes to
// grpc-go, everything else (HTTP/1.1, and HTTP/2 carrying Connect,
// gRPC-Web, the dashboard or the probes) to the HTTP server.
//
// A gRPC client speaks HTTP/2 with prior knowledge (h2c): it opens with the
// HTTP/2 client preface, its SETTINGS, and the HEADERS of its first call,
// whose content-type is application/grpc (or application/grpc+proto). A
// connection goes to one server for good, by its first call: a client that
// mixes native gRPC and Connect or gRPC-Web on one HTTP/2 connection would
// see its other calls refused by grpc-go (gRPC clients do not). A proxy
// does: a gateway or mesh sidecar carries its clients' calls, of every
// protocol, over the same upstream connections. So a connection whose first
// request came through a proxy (it names one in Forwarded,
// X-Forwarded-For or Via, as Google's load balancers, nginx and an edge
// Envoy do, or carries Envoy's x-envoy-* headers, as a mesh sidecar's
// does) stays with the HTTP server, which serves every protocol.
// The listener reads each new connection up to those headers, decodes them
// (hpack), and hands the connection, with every byte it read replayed, to
// the server whose it is. Some clients (grpc-go's among them) wait for the
// server's SETTINGS before they send a request, so the listener writes an
// empty SETTINGS (every value at its default) once it has seen the preface;
// the server's own SETTINGS follow later, which HTTP/2 allows. The client
// acknowledges both, and the server that gets the connection must not see
// the acknowledgement of a SETTINGS it never sent (Go's HTTP/2 server hangs
// up on one): the replayed connection drops the first acknowledgement the
// client sends, which is the listener's, since the client saw its SETTINGS
// first.
//
// Each connection is read by a goroutine of its own, for at most timeout
// and sniffMaxBytes, so a client that stalls, or sends garbage, holds
// nothing but its own connection slot (connLimit) for that long, and never
// delays another's.
type splitListener struct {
	inner   net.Listener
	timeout time.Duration
	log     *slog.Logger
	// grpc and http are the two servers' listeners.
	grpc, http *connQueue

	routed *splitCounts

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// splitCounts count the connections a split listener handed to grpc-go and
// to the HTTP server, and those it closed while sniffing them.
type splitCounts struct{ grpc, http, dropped atomic.Int64 }

func newSplitListener(inner net.Listener, timeout time.Duration, log *slog.Logger, routed *splitCounts) *splitListener {
	l := &splitListener{inner: inner, timeout: timeout, log: log, routed: routed, done: make(chan struct{})}
	l.grpc = &connQueue{conns: make(chan net.Conn), addr: inner.Addr(), split: l, closed: make(chan struct{})}
	l.http = &connQueue{conns: make(chan net.Conn), addr: inner.Addr(), split: l, closed: make(chan struct{})}
	return l
}

// run accepts connections until the listener is closed, then waits for the
// connections being sniffed.
func (l *splitListener) run() {
	defer l.wg.Wait()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			_ = l.Close()
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.route(c)
		}()
	}
}

// route sniffs c and hands it to its server, or closes it.
func (l *splitListener) route(c net.Conn) {
	toGRPC, conn, err := sniff(c, l.timeout)
	if err != nil {
		l.log.Debug("closed a connection while sniffing its protocol", "remote", c.RemoteAddr().String(), "err", err)
		l.routed.dropped.Add(1)
		_ = c.Close()
		return
	}
	q, n := l.http, &l.routed.http
	if toGRPC {
		q, n = l.grpc, &l.routed.grpc
	}
	n.Add(1)
	select {
	case q.conns <- conn:
	case <-q.closed:
		_ = c.Close()
	case <-l.done:
		_ = c.Close()
	}
}

// Close stops accepting; the two servers' listeners report closed.
func (l *splitListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
	})
	return err
}

// connQueue is one server's side of a splitListener.
type connQueue struct {
	conns     chan net.Conn
	addr      net.Addr
	split     *splitListener
	closed    chan struct{}
	closeOnce sync.Once
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	case <-q.split.done:
		return nil, net.ErrClosed
	}
}

// Close closes this side only: the server that owns it is stopping.
func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// sniff reads c until it knows whether c carries native gRPC, within
// timeout and sniffMaxBytes, and returns c with what was read replayed.
func sniff(c net.Conn, timeout time.Duration) (toGRPC bool, replayed net.Conn, err error) {
	deadline := time.Now().Add(timeout)
	_ = c.SetDeadline(deadline)
	rec := &recorder{r: c}
	preface := []byte(http2.ClientPreface)
	// The preface, or the first bytes that cannot start it: an HTTP/1.1
	// request may be shorter than the preface, and waits for its answer.
	var tmp [len(http2.ClientPreface)]byte
	for len(rec.buf) < len(preface) {
		n, err := rec.Read(tmp[:len(preface)-len(rec.buf)])
		if !bytes.HasPrefix(preface, rec.buf) {
			return false, replay(c, rec.buf, false), nil
		}
		if err != nil && n == 0 {
			return false, nil, err
		}
	}
	// The SETTINGS is written while the client's frames are read: on a
	// connection without buffers (net.Pipe) a client may not read before
	// it has written. It is written whole before the connection is handed
	// on, so that it precedes the server's.
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(settingsFrame)
		wrote <- err
	}()
	toGRPC, isHTTP2, err := readFirstHeaders(rec)
	if werr := <-wrote; werr != nil {
		return false, nil, werr
	}
	if err != nil {
		return false, nil, err
	}
	return toGRPC, replay(c, rec.buf, isHTTP2), nil
}

// readFirstHeaders reads HTTP/2 frames, past the preface, up to the first
// HEADERS, and reports whether they start a native gRPC call; frames that
// cannot come before a request end the reading there, for the HTTP server
// to refuse.
func readFirstHeaders(rec *recorder) (toGRPC, isHTTP2 bool, err error) {
	fr := http2.NewFramer(nil, rec)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = sniffMaxBytes
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return false, false, err
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			var ct string
			proxied := false
			for _, hf := range h.RegularFields() {
				name := strings.ToLower(hf.Name) // HTTP/2 sends them lower-case
				switch {
				case strings.EqualFold(name, "Content-Type"):
					ct = strings.ToLower(hf.Value)
				case name == "forwarded", name == "x-forwarded-for", name == "via", strings.HasPrefix(name, "x-envoy-"):
					proxied = true
				}
			}
			return isGRPCProto(ct) && !proxied, true, nil
		}
		switch f.(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame, *http2.PriorityFrame, *http2.PingFrame:
			// What a client may send before its first request.
		default:
			return false, true, nil
		}
	}
}

// isGRPCProto reports whether a content-type names native gRPC with
// protobuf messages, which grpc-go serves: application/grpc or
// application/grpc+proto. gRPC with JSON (application/grpc+json), which
// grpc-go has no codec for here, stays with connect-go, as does gRPC-Web.
func isGRPCProto(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.TrimSpace(ct)
	return ct == "application/grpc" || ct == "application/grpc+proto"
}

// settingsFrame is an empty SETTINGS frame: every setting at its default.
var settingsFrame = []byte{0, 0, 0, byte(http2.FrameSettings), 0, 0, 0, 0, 0}

// replay lifts the sniffing deadline and returns c replaying read; with
// sentSettings, the client's first SETTINGS acknowledgement is dropped.
func replay(c net.Conn, read []byte, sentSettings bool) net.Conn {
	_ = c.SetDeadline(time.Time{})
	var r io.Reader = io.MultiReader(bytes.NewReader(read), c)
	if sentSettings {
		r = &ackFilter{src: r, prefaceLeft: len(http2.ClientPreface)}
	}
	return &replayConn{Conn: c, r: r}
}

// recorder keeps what it reads, up to sniffMaxBytes.
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	if len(r.buf) >= sniffMaxBytes {
		return 0, errSniffTooLong
	}
	p = p[:min(len(p), sniffMaxBytes-len(r.buf))]
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

// replayConn is a connection whose reads come from r.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ackFilter passes an HTTP/2 client's bytes through but for its first
// SETTINGS acknowledgement. It reads frame by frame until it has dropped
// it, then gets out of the way.
type ackFilter struct {
	src         io.Reader
	prefaceLeft int
	pending     []byte
	dropped     bool
}

func (f *ackFilter) Read(p []byte) (int, error) {
	for len(f.pending) == 0 {
		if f.dropped {
			return f.src.Read(p)
		}
		if f.prefaceLeft > 0 {
			f.pending = make([]byte, f.prefaceLeft)
			f.prefaceLeft = 0
			if _, err := io.ReadFull(f.src, f.pending); err != nil {
				return 0, err
			}
			continue
		}
		var h [9]byte
		if _, err := io.ReadFull(f.src, h[:]); err != nil {
			return 0, err
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if http2.FrameType(h[3]) == http2.FrameSettings && http2.Flags(h[4]).Has(http2.FlagSettingsAck) && length == 0 {
			f.dropped = true
			continue
		}
		if length > 16384 {
			// Larger than any frame allowed before the server says
			// otherwise: the server refuses it; stop looking.
			f.pending, f.dropped = h[:], true
			continue
		}
		f.pending = make([]byte, 9+length)
		copy(f.pending, h[:])
		if _, err := io.ReadFull(f.src, f.pending[9:]); err != nil {
			return 0, err
		}
	}
	n := copy(p, f.pending)
	f.pending = f.pending[n:]
	return n, nil
}
