package server

import (
	"net/http"
	"net/url"
	"testing"

	"blackfriday.local/contract/record"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	"blackfriday.local/gen/blackfriday/sales/v1/salesv1connect"
)

func TestProtocolOf(t *testing.T) {
	t.Parallel()
	const (
		sale   = salesv1connect.SalesServiceRecordSaleProcedure
		course = blackfridayconnect.ProductSaleServiceProcesarVentaProcedure
	)
	tests := []struct {
		procedure, contentType, query string
		want                          record.Protocol
	}{
		{sale, "application/grpc", "", record.ProtocolGRPC},
		{sale, "application/grpc+proto", "", record.ProtocolGRPC},
		{sale, "application/grpc-web+proto", "", record.ProtocolGRPCWeb},
		{sale, "application/grpc-web-text", "", record.ProtocolGRPCWeb},
		{sale, "application/json", "", record.ProtocolConnectJSON},
		{sale, "Application/JSON; charset=utf-8", "", record.ProtocolConnectJSON},
		{sale, "application/proto", "", record.ProtocolConnectProto},
		{sale, "application/connect+json", "", record.ProtocolConnectJSON},
		{sale, "application/connect+proto", "", record.ProtocolConnectProto},
		// A Connect GET has no Content-Type; its query names the codec.
		{sale, "", "encoding=json&message=%7B%7D", record.ProtocolConnectJSON},
		{sale, "", "encoding=proto", record.ProtocolConnectProto},
		{sale, "", "", record.ProtocolUnknown},
		// A query counts only without a Content-Type.
		{sale, "text/plain", "encoding=json", record.ProtocolUnknown},
		{sale, "text/json", "", record.ProtocolUnknown},
		{sale, "application/xml", "", record.ProtocolUnknown},
		// The course's service is one protocol, whatever its transport.
		{course, "application/grpc", "", record.ProtocolLegacyGRPC},
		{course, "application/json", "", record.ProtocolLegacyGRPC},
	}
	for _, tt := range tests {
		header := http.Header{}
		if tt.contentType != "" {
			header.Set("Content-Type", tt.contentType)
		}
		query := func() url.Values {
			if tt.contentType != "" {
				t.Errorf("protocolOf(%q, %q) read the query", tt.procedure, tt.contentType)
			}
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
		if got := protocolOf(tt.procedure, header, query); got != tt.want {
			t.Errorf("protocolOf(%q, %q, %q) = %q, want %q", tt.procedure, tt.contentType, tt.query, got, tt.want)
		}
	}
}
