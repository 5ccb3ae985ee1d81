package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// A client, for the per-client limits (a share of the request-byte budget,
// a cap on WatchSummary streams), is the address its calls come from: an
// IPv4 address, or an IPv6 /64 (what one host or subscriber is usually
// given, and can pick addresses from at will).
//
// Not a connection: connections cost a client nothing to multiply (up to
// MAX_CONNECTIONS), so a per-connection share would bind nobody. An address
// does cost: one host behind one NAT is one client, however many
// connections it opens.
//
// Behind a proxy (the Gateway, an ingress) every call comes from the
// proxy's few addresses, and the client is named by X-Forwarded-For. That
// header is believed only from the trusted proxies, and only as far as
// trusted proxies wrote it: the client is the nearest address in the chain
// that is not a trusted proxy. Whatever a client writes into the header
// itself sits further left, behind its own address as its proxy appended
// it, and is never reached.
type clients struct {
	trusted []netip.Prefix
}

// forwardedForKey is the header proxies append the address they saw to.
const forwardedForKey = "X-Forwarded-For"

// key names the client of a request that arrived from remoteAddr (host and
// port, as in http.Request.RemoteAddr) with header.
func (c clients) key(remoteAddr string, header http.Header) netip.Addr {
	addr := peerAddr(remoteAddr)
	if !c.isTrusted(addr) {
		return clientOf(addr)
	}
	hops := header.Values(forwardedForKey)
	for i := len(hops) - 1; i >= 0; i-- {
		list := hops[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				list, hop = list[:j], list[j+1:]
			} else {
				list, hop = "", list
			}
			next, ok := parseHop(hop)
			if !ok {
				// A hop a trusted proxy could not have written: stop at
				// the last address known to be true.
				return clientOf(addr)
			}
			addr = next
			if !c.isTrusted(addr) {
				return clientOf(addr)
			}
		}
	}
	// Every hop is a trusted proxy: the call began inside.
	return clientOf(addr)
}

func (c clients) isTrusted(addr netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// peerAddr is the address of a request's peer. A peer without one (a test's
// recorder) is the zero address: one client.
func peerAddr(remoteAddr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, _ := netip.ParseAddr(host)
	return addr.Unmap()
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port, IPv6 possibly in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return addr.Unmap(), true
	}
	return netip.Addr{}, false
}

// clientOf is the client an address belongs to: itself for IPv4, its /64
// for IPv6.
func clientOf(addr netip.Addr) netip.Addr {
	if addr.Is6() {
		p, _ := addr.WithZone("").Prefix(64)
		return p.Addr()
	}
	return addr
}

// shares counts what each client holds of a limited resource: request
// bytes, or streams. A client's entry lives while it holds a call in
// flight, so there are never more entries than calls in flight, and a
// client's count is one atomic operation away from any of its calls.
type shares struct {
	mu       sync.Mutex
	byClient map[netip.Addr]*share
}

// share is one client's holding.
type share struct {
	key netip.Addr
	// held is what the client holds: bytes or streams.
	held atomic.Int64
	// calls are the calls that joined it; guarded by shares.mu.
	calls int
}

func newShares() *shares { return &shares{byClient: map[netip.Addr]*share{}} }

// join returns key's share, for one more call; the call must leave it.
func (s *shares) join(key netip.Addr) *share {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.byClient[key]
	if sh == nil {
		sh = &share{key: key}
		s.byClient[key] = sh
	}
	sh.calls++
	return sh
}

// leave ends a call's use of its share, forgetting the client with its last
// call.
func (s *shares) leave(sh *share) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh.calls--; sh.calls == 0 {
		delete(s.byClient, sh.key)
	}
}

// take adds n to the share unless that would pass limit.
func (sh *share) take(n, limit int64) bool {
	if sh.held.Add(n) > limit {
		sh.held.Add(-n)
		return false
	}
	return true
}

// top is the most any one client holds, for the metrics.
func (s *shares) top() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var most int64
	for _, sh := range s.byClient {
		most = max(most, sh.held.Load())
	}
	return most
}

// clients is how many clients hold a share, for the metrics.
func (s *shares) clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byClient)
}
