package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"connectrpc.com/connect"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
	"blackfriday.local/services/api/internal/metrics"
)

// holdingAnalytics answers WatchSummary with one snapshot and then holds
// the stream open until its client leaves.
type holdingAnalytics struct{ fakeAnalytics }

func (a holdingAnalytics) WatchSummary(ctx context.Context, _ *salesv1.WatchSummaryRequest, s *connect.ServerStream[salesv1.WatchSummaryResponse]) error {
	return a.Watch(ctx, s.Send)
}

func (holdingAnalytics) Watch(ctx context.Context, send func(*salesv1.WatchSummaryResponse) error) error {
	err := send(&salesv1.WatchSummaryResponse{Event: &salesv1.WatchSummaryResponse_Snapshot{Snapshot: &salesv1.SummarySnapshot{Version: 1}}})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// watchFrom opens a WatchSummary stream and reads its first message; the
// stream is closed when the test ends. It returns the error that ended the
// stream instead, if one did.
func watchFrom(t *testing.T, c *http.Client, url string, opts ...connect.ClientOption) (*connect.ServerStreamForClient[salesv1.WatchSummaryResponse], error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := salesv1connect.NewAnalyticsServiceClient(c, url, opts...).WatchSummary(ctx, &salesv1.WatchSummaryRequest{})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = stream.Close() })
	if !stream.Receive() {
		return nil, stream.Err()
	}
	return stream, nil
}

// fromAddr is a client whose connections come from the local address ip.
func fromAddr(t *testing.T, ip string, h2c bool) *http.Client {
	t.Helper()
	p := new(http.Protocols)
	p.SetHTTP1(!h2c)
	p.SetUnencryptedHTTP2(h2c)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{Protocols: p, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestWatchSummaryPerClient: one client at its cap of WatchSummary streams
// is refused another with resource_exhausted and Retry-After, while another
// client still gets one, and the first gets one again once it closes one.
// Clients are told apart by their address, or behind a trusted proxy by
// X-Forwarded-For, over gRPC and Connect.
func TestWatchSummaryPerClient(t *testing.T) {
	t.Parallel()
	const perClient = 3
	protocols := []struct {
		name string
		h2c  bool
		opts []connect.ClientOption
	}{
		{"gRPC", true, []connect.ClientOption{connect.WithGRPC()}},
		{"Connect", false, nil},
	}
	clients := []struct {
		name    string
		trusted []netip.Prefix
		a, b    func(t *testing.T, h2c bool) *http.Client
	}{
		{"by address", nil,
			func(t *testing.T, h2c bool) *http.Client { return fromAddr(t, "127.0.0.1", h2c) },
			func(t *testing.T, h2c bool) *http.Client { return fromAddr(t, "127.0.0.2", h2c) }},
		{"behind a trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			func(t *testing.T, h2c bool) *http.Client { return behind(httpClient(t, !h2c, h2c), "198.51.100.1") },
			func(t *testing.T, h2c bool) *http.Client { return behind(httpClient(t, !h2c, h2c), "198.51.100.2") }},
	}
	for _, p := range protocols {
		for _, c := range clients {
			t.Run(c.name+" over "+p.name, func(t *testing.T) {
				t.Parallel()
				m := metrics.New()
				h := newHarness(t, options{metrics: m, analytics: holdingAnalytics{}, server: Config{
					MaxWatchersPerClient: perClient, TrustedProxies: c.trusted,
				}})
				a, b := c.a(t, p.h2c), c.b(t, p.h2c)
				var held []*connect.ServerStreamForClient[salesv1.WatchSummaryResponse]
				for i := range perClient {
					s, err := watchFrom(t, a, h.url, p.opts...)
					if err != nil {
						t.Fatalf("WatchSummary() #%d of one client, within its cap of %d = %v, want a stream", i+1, perClient, err)
					}
					held = append(held, s)
				}
				_, err := watchFrom(t, a, h.url, p.opts...)
				var ce *connect.Error
				if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || ce.Meta().Get("Retry-After") == "" {
					t.Errorf("WatchSummary() beyond one client's cap of %d = %v, want resource_exhausted with Retry-After", perClient, err)
				}
				if _, err := watchFrom(t, b, h.url, p.opts...); err != nil {
					t.Errorf("WatchSummary() from another client while the first is at its cap = %v, want a stream", err)
				}
				if n := gauge(t, m, "bf_api_watch_client_refusals_total"); n != 1 {
					t.Errorf("bf_api_watch_client_refusals_total = %v, want 1", n)
				}
				_ = held[0].Close()
				waitFor(t, "the first client's closed stream given back", func() bool {
					s, err := watchFrom(t, a, h.url, p.opts...)
					if s != nil {
						_ = s.Close()
					}
					return err == nil
				})
			})
		}
	}
}
