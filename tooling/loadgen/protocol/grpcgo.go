package protocol

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync/atomic"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/tooling/loadgen/wire"
)

// newGRPCGo returns a client that sends gRPC with grpc-go's own client
// (the stubs buf generates with protoc-gen-go-grpc) over Conns h2c
// connections, in turn: the grpc-go anchor, grpc-go at both ends.
func newGRPCGo(cfg Config, batch int, counter *wire.Counter) (*Client, error) {
	u, err := url.Parse(cfg.Target)
	if err != nil || u.Host == "" || u.Scheme != "http" {
		return nil, fmt.Errorf("target %q: protocol %s wants http://HOST:PORT (h2c)", cfg.Target, cfg.Protocol)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return counter.DialContext(ctx, "tcp", addr)
		}),
	}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerCreds("Bearer "+cfg.Token)))
	}
	conns := make([]*grpc.ClientConn, max(cfg.Conns, 1))
	sends := make([]func(context.Context, []*salesv1.Sale) Reply, len(conns))
	closeAll := func() {
		for _, cc := range conns {
			if cc != nil {
				cc.Close()
			}
		}
	}
	for i := range conns {
		// passthrough: the host is dialled as given, not resolved by
		// grpc-go's DNS resolver.
		if conns[i], err = grpc.NewClient("passthrough:///"+u.Host, opts...); err != nil {
			closeAll()
			return nil, fmt.Errorf("grpc-go client: %w", err)
		}
		sends[i] = grpcGoSender(salesv1.NewSalesServiceClient(conns[i]), batch)
	}
	var next atomic.Uint64
	return &Client{
		name: cfg.Protocol, batch: batch, wire: counter, close: closeAll,
		send: func(ctx context.Context, sales []*salesv1.Sale) Reply {
			return sends[next.Add(1)%uint64(len(sends))](ctx, sales)
		},
	}, nil
}

func grpcGoSender(cl salesv1.SalesServiceClient, batch int) func(context.Context, []*salesv1.Sale) Reply {
	return func(ctx context.Context, sales []*salesv1.Sale) Reply {
		var trailer metadata.MD
		if batch == 1 {
			resp, err := cl.RecordSale(ctx, &salesv1.RecordSaleRequest{Sale: sales[0]}, grpc.Trailer(&trailer))
			if err != nil {
				return grpcGoErr(err, trailer)
			}
			if resp.GetSaleId() == "" {
				return Reply{Code: "internal", Err: errors.New("RecordSale answered no sale_id")}
			}
			return ok
		}
		resp, err := cl.RecordSales(ctx, &salesv1.RecordSalesRequest{Sales: sales}, grpc.Trailer(&trailer))
		if err != nil {
			return grpcGoErr(err, trailer)
		}
		return batchReply(resp, len(sales))
	}
}

// grpcGoErr is the Reply of a failed grpc-go call. gRPC's status codes and
// Connect's are the same numbers; grpc-go turns the caller's deadline into
// DeadlineExceeded itself.
func grpcGoErr(err error, trailer metadata.MD) Reply {
	r := Reply{Code: connect.Code(status.Code(err)).String(), Err: err}
	if v := trailer.Get(SaleRecorded); len(v) > 0 {
		r.Recorded = v[0]
	}
	return r
}

// bearerCreds sends a bearer token with every call, over h2c too.
type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": string(b)}, nil
}

func (bearerCreds) RequireTransportSecurity() bool { return false }
