package record_test

import (
	"testing"

	"blackfriday.local/contract/record"
)

// TestWire pins the record contract as it travels: changing any of these
// breaks every record already on the topic and every reader of it.
func TestWire(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{record.HeaderContentType, "content-type"},
		{record.HeaderSchema, "schema"},
		{record.HeaderIngestProtocol, "ingest-protocol"},
		{record.HeaderDLQReason, "dlq-reason"},
		{record.HeaderDLQTopic, "dlq-topic"},
		{record.HeaderDLQPartition, "dlq-partition"},
		{record.HeaderDLQOffset, "dlq-offset"},
		{record.ContentTypeProtobuf, "application/x-protobuf"},
		{record.Schema(), "blackfriday.sales.v1.Sale"},
		{string(record.ProtocolUnknown), "unknown"},
	} {
		if tc.got != tc.want {
			t.Errorf("contract value = %q, want %q", tc.got, tc.want)
		}
	}
	var got []string
	for _, p := range record.Protocols() {
		got = append(got, string(p))
	}
	want := []string{"connect+json", "connect+proto", "grpc", "grpc-web", "legacy-rest", "legacy-grpc"}
	if len(got) != len(want) {
		t.Fatalf("Protocols() = %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Protocols() = %q, want %q", got, want)
			break
		}
	}
}

func TestParseProtocol(t *testing.T) {
	t.Parallel()
	for _, p := range record.Protocols() {
		if got := record.ParseProtocol([]byte(p)); got != p {
			t.Errorf("ParseProtocol(%q) = %q, want %q", p, got, p)
		}
	}
	for _, v := range []string{"", "unknown", "GRPC", "grpc ", "connect", "legacy-rest\x00"} {
		if got := record.ParseProtocol([]byte(v)); got != record.ProtocolUnknown {
			t.Errorf("ParseProtocol(%q) = %q, want %q", v, got, record.ProtocolUnknown)
		}
	}
	if got := record.ParseProtocol(nil); got != record.ProtocolUnknown {
		t.Errorf("ParseProtocol(nil) = %q, want %q", got, record.ProtocolUnknown)
	}
}

// TestParseProtocolAllocs holds ParseProtocol to no allocation: the
// aggregator calls it for every record.
func TestParseProtocolAllocs(t *testing.T) {
	v := []byte("legacy-grpc")
	if n := testing.AllocsPerRun(100, func() { record.ParseProtocol(v) }); n != 0 {
		t.Errorf("ParseProtocol allocates %v times per call, want 0", n)
	}
}
