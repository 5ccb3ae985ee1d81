package server

import (
	"net/http"
	"net/url"
	"strings"

	"blackfriday.local/contract/record"
	"blackfriday.local/gen/blackfriday/blackfridayconnect"
)

// legacyPrefix starts the paths of the course's gRPC service.
const legacyPrefix = "/" + blackfridayconnect.ProductSaleServiceName + "/"

// protocolOf names the ingest protocol of a call to procedure, for the
// metrics and the record's ingest-protocol header. The course's gRPC
// service counts as one protocol whatever its transport. The others are
// told apart by the request's Content-Type, as connect-go tells them
// apart; a Connect GET, which has none, names its codec in its query,
// which is only read then.
func protocolOf(procedure string, header http.Header, query func() url.Values) record.Protocol {
	if strings.HasPrefix(procedure, legacyPrefix) {
		return record.ProtocolLegacyGRPC
	}
	mt := mediaType(header)
	switch {
	case strings.HasPrefix(mt, "application/grpc-web"):
		return record.ProtocolGRPCWeb
	case strings.HasPrefix(mt, "application/grpc"):
		return record.ProtocolGRPC
	}
	var codec string
	if mt == "" {
		codec = query().Get("encoding")
	} else if sub, ok := strings.CutPrefix(mt, "application/"); ok {
		// Unary Connect sends application/json or application/proto;
		// streaming sends application/connect+json and so on.
		codec = strings.TrimPrefix(sub, "connect+")
	}
	switch codec {
	case "json":
		return record.ProtocolConnectJSON
	case "proto":
		return record.ProtocolConnectProto
	}
	return record.ProtocolUnknown
}

// mediaType is the media type a request's header names, lower case,
// without parameters: cheaper than mime.ParseMediaType, on the path every
// call takes.
func mediaType(header http.Header) string {
	ct, _, _ := strings.Cut(header.Get("Content-Type"), ";")
	return strings.ToLower(strings.TrimSpace(ct))
}
