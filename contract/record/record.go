// Package record is the contract of a sales record on Kafka, between the api
// that writes it and the aggregator that reads it: the value is a
// protobuf-binary salesv1.Sale, and the headers below describe it. A record
// the aggregator cannot count goes to the dead-letter topic with the dlq-
// headers added.
package record

import (
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// The names of the headers of a sales record.
const (
	// HeaderContentType holds the encoding of the value, ContentTypeProtobuf.
	HeaderContentType = "content-type"
	// HeaderSchema holds the full name of the message the value encodes,
	// Schema().
	HeaderSchema = "schema"
	// HeaderIngestProtocol holds the Protocol the sale arrived through.
	HeaderIngestProtocol = "ingest-protocol"
	// HeaderTraceParent, when the api traces (package telemetry), holds
	// the W3C trace context of the span that produced the record, and
	// HeaderTraceState its tracestate when there is one: the aggregator's
	// spans for the sale continue that trace. The OpenTelemetry
	// propagators write and read them; a record is counted the same with
	// them or without, and a dead letter keeps them.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// The names of the headers the aggregator adds to a record it sends to the
// dead-letter topic, next to the record's own.
const (
	// HeaderDLQReason says why the record cannot be counted: a stable
	// first word, then the detail.
	HeaderDLQReason = "dlq-reason"
	// HeaderDLQTopic, HeaderDLQPartition and HeaderDLQOffset say where the
	// record was read; the numbers are decimal.
	HeaderDLQTopic     = "dlq-topic"
	HeaderDLQPartition = "dlq-partition"
	HeaderDLQOffset    = "dlq-offset"
)

// ContentTypeProtobuf is the content-type of a value in protobuf's binary
// encoding.
const ContentTypeProtobuf = "application/x-protobuf"

// Schema returns the value of the schema header, the full name of the
// message a record's value encodes: blackfriday.sales.v1.Sale. It comes from
// the message's descriptor, so that it follows the schema.
func Schema() string {
	return string((&salesv1.Sale{}).ProtoReflect().Descriptor().FullName())
}

// Protocol names the API a sale arrived through, in the ingest-protocol
// header. The aggregator counts sales per protocol, so the names are the
// field names of the ingest hash.
type Protocol string

// The protocols a sale arrives through.
const (
	ProtocolConnectJSON  Protocol = "connect+json"
	ProtocolConnectProto Protocol = "connect+proto"
	ProtocolGRPC         Protocol = "grpc"
	ProtocolGRPCWeb      Protocol = "grpc-web"
	ProtocolLegacyREST   Protocol = "legacy-rest"
	ProtocolLegacyGRPC   Protocol = "legacy-grpc"
	// ProtocolUnknown is what the api writes when it cannot tell, and
	// what a record counts under when its header is missing or names no
	// protocol in Protocols.
	ProtocolUnknown Protocol = "unknown"
)

// Protocols lists the protocols counted by name, every Protocol but
// ProtocolUnknown. They bound the field names of the ingest hash.
func Protocols() []Protocol {
	return []Protocol{
		ProtocolConnectJSON, ProtocolConnectProto, ProtocolGRPC, ProtocolGRPCWeb,
		ProtocolLegacyREST, ProtocolLegacyGRPC,
	}
}

// ParseProtocol returns the protocol an ingest-protocol header value names:
// one of Protocols, or ProtocolUnknown for anything else, so that an
// unexpected value cannot grow the ingest hash. It does not allocate.
func ParseProtocol(v []byte) Protocol {
	for _, p := range Protocols() {
		if string(v) == string(p) {
			return p
		}
	}
	return ProtocolUnknown
}
