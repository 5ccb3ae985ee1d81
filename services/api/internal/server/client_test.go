package server

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientKey(t *testing.T) {
	t.Parallel()
	proxies := clients{trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	tests := []struct {
		name   string
		c      clients
		remote string
		xff    []string
		want   string
	}{
		{"no proxy", clients{}, "203.0.113.7:5000", nil, "203.0.113.7"},
		{"an untrusted peer's header is ignored", proxies, "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"a trusted proxy names the client", proxies, "10.1.2.3:80", []string{"203.0.113.7"}, "203.0.113.7"},
		{"the nearest untrusted hop, not a spoofed one", proxies, "10.1.2.3:80", []string{"198.51.100.1, 203.0.113.7"}, "203.0.113.7"},
		{"through two trusted proxies", proxies, "10.1.2.3:80", []string{"198.51.100.1, 203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"over several header lines", proxies, "10.1.2.3:80", []string{"198.51.100.1", "203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"hops with ports and brackets", proxies, "10.1.2.3:80", []string{"[2001:db8::1]:443, 203.0.113.7:1234"}, "203.0.113.7"},
		{"a bracketed IPv6 hop", proxies, "10.1.2.3:80", []string{"[2001:db8::1]"}, "2001:db8::"},
		{"a proxy without the header", proxies, "10.1.2.3:80", nil, "10.1.2.3"},
		{"every hop trusted", proxies, "10.1.2.3:80", []string{"10.4.4.4, 10.5.5.5"}, "10.4.4.4"},
		{"a hop no proxy writes stops the walk", proxies, "10.1.2.3:80", []string{"203.0.113.7, unknown"}, "10.1.2.3"},
		{"IPv6 by its /64", clients{}, "[2001:db8:1:2:aaaa::1]:5000", nil, "2001:db8:1:2::"},
		{"IPv6 with a zone", clients{}, "[fe80::1%eth0]:5000", nil, "fe80::"},
		{"IPv4 in IPv6", clients{}, "[::ffff:203.0.113.7]:5000", nil, "203.0.113.7"},
		{"a trusted IPv6 proxy", proxies, "[fd00::1]:80", []string{"2001:db8:1:2:aaaa::1"}, "2001:db8:1:2::"},
		{"no address at all", clients{}, "pipe", nil, "invalid IP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, v := range tt.xff {
				h.Add("X-Forwarded-For", v)
			}
			if got := tt.c.key(tt.remote, h).String(); got != tt.want {
				t.Errorf("key(%q, X-Forwarded-For %q) = %s, want %s", tt.remote, tt.xff, got, tt.want)
			}
		})
	}
}

func TestShares(t *testing.T) {
	t.Parallel()
	s := newShares()
	a, b := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("203.0.113.8")
	first, second, other := s.join(a), s.join(a), s.join(b)
	if first != second {
		t.Fatal("join() of one client twice = two shares, want one")
	}
	if !first.take(6, 10) || !second.take(4, 10) || second.take(1, 10) {
		t.Errorf("take() of 6, 4 then 1 under a limit of 10 = held %d, want the first two taken and the third refused", first.held.Load())
	}
	if !other.take(10, 10) {
		t.Error("take() by another client = refused, want its own share")
	}
	if got := s.top(); got != 10 {
		t.Errorf("top() = %d, want 10", got)
	}
	s.leave(first)
	if got := s.clients(); got != 2 {
		t.Errorf("clients() with one of a client's two calls gone = %d, want 2", got)
	}
	s.leave(second)
	s.leave(other)
	if got := s.clients(); got != 0 {
		t.Errorf("clients() once every call left = %d, want 0: entries must not outlive their calls", got)
	}
}
