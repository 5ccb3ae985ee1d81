package server

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The codecs below replace connect-go's default ones on the ingest handlers
// (see docs/security.md, "Unknown fields and overflowing integers"):
//
//   - On SalesService, a field the schema does not know is an error, in JSON
//     and in binary, naming the field. In JSON it is most likely a typo
//     ("saleid", "soldAT"), and dropping it silently would lose what the
//     client meant: a misspelled sale_id would make every retry a new sale,
//     a misspelled sold_at would date the sale by its arrival. In binary it
//     can only come from a newer schema, and a field the server would drop
//     (a currency, say) could change what a sale means. Either way the
//     client learns at once, and nothing the server did not validate is
//     written to Kafka.
//   - On every ingest handler, the course's included, a 32-bit integer or
//     enum field whose varint does not fit in 32 bits is an error. protobuf
//     decoders truncate such a value (2^32+5 becomes 5), so a hostile or
//     broken encoder could otherwise have a quantity of 4294967301 recorded
//     as 5.
//
// The course's gRPC API keeps ignoring unknown fields, as its server did:
// its clients must work unchanged.

// codecOptions returns the handler options that install the strict codecs.
// rejectUnknown turns on the unknown-field check.
func codecOptions(rejectUnknown bool) connect.HandlerOption {
	opts := []connect.HandlerOption{
		connect.WithCodec(&protoCodec{rejectUnknown: rejectUnknown}),
	}
	if rejectUnknown {
		// connect-go names its JSON codec twice; both names must be
		// replaced.
		opts = append(opts,
			connect.WithCodec(&jsonCodec{name: "json"}),
			connect.WithCodec(&jsonCodec{name: "json; charset=utf-8"}))
	}
	return connect.WithHandlerOptions(opts...)
}

// protoCodec is connect-go's protobuf binary codec with the wire checks
// above.
type protoCodec struct {
	rejectUnknown bool
}

func (c *protoCodec) Name() string { return "proto" }

func (c *protoCodec) Marshal(m any) ([]byte, error) {
	return c.MarshalAppend(nil, m)
}

func (c *protoCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (c *protoCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	// proto.Unmarshal first: it reports malformed input (truncated fields,
	// invalid UTF-8 in strings) in its own words, and the check below may
	// then assume well-formed input.
	if err := proto.Unmarshal(data, pm); err != nil {
		return fmt.Errorf("invalid protobuf: %s", strings.TrimPrefix(err.Error(), "proto: "))
	}
	return checkWire(data, pm.ProtoReflect().Descriptor(), "", c.rejectUnknown, 0)
}

// maxWireDepth bounds the recursion of checkWire; protobuf's own limit is
// 10000, and our messages nest three deep.
const maxWireDepth = 100

// errWireDepth means a message nests deeper than maxWireDepth.
var errWireDepth = errors.New("message nests too deeply")

// checkWire walks a message in wire format, as described by md, and reports
// the first field the schema does not know (when rejectUnknown) or the first
// 32-bit field whose value does not fit in 32 bits. path names the message
// for errors ("" for the request, "sale", "sales[3]").
func checkWire(b []byte, md protoreflect.MessageDescriptor, path string, rejectUnknown bool, depth int) error {
	if depth > maxWireDepth {
		return errWireDepth
	}
	var counts map[protowire.Number]int // items seen of each repeated field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("invalid protobuf: %v", protowire.ParseError(n))
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("invalid protobuf: %v", protowire.ParseError(n))
		}
		value := b[:n]
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			if rejectUnknown {
				return fmt.Errorf("unknown field %d in %s: this API rejects fields it does not know", num, messageName(md, path))
			}
			continue
		}
		name := string(fd.Name())
		if path != "" {
			name = path + "." + name
		}
		if fd.IsList() {
			if counts == nil {
				counts = map[protowire.Number]int{}
			}
			name = fmt.Sprintf("%s[%d]", name, counts[num])
			counts[num]++
		}
		if err := checkValue(fd, typ, value, name, rejectUnknown, depth); err != nil {
			return err
		}
	}
	return nil
}

// checkValue checks one field's value.
func checkValue(fd protoreflect.FieldDescriptor, typ protowire.Type, value []byte, name string, rejectUnknown bool, depth int) error {
	// A known field in a wire type its kind does not use (a quantity as
	// bytes, say) is kept by protobuf decoders as an unknown field, and
	// the field itself left unset: no conforming encoder writes one.
	if want := wireType(fd.Kind()); typ != want && (typ != protowire.BytesType || !fd.IsList() || want == protowire.BytesType) {
		return fmt.Errorf("%s: wire type %d, want %d", name, typ, want)
	}
	switch fd.Kind() {
	case protoreflect.MessageKind:
		if typ != protowire.BytesType || fd.IsMap() {
			return nil // map entries hold no ingest field; proto.Unmarshal checked the rest
		}
		inner, _ := protowire.ConsumeBytes(value)
		return checkWire(inner, fd.Message(), name, rejectUnknown, depth+1)
	case protoreflect.Int32Kind, protoreflect.EnumKind, protoreflect.Sint32Kind, protoreflect.Uint32Kind:
	default:
		return nil
	}
	varints := [][]byte{value}
	if typ == protowire.BytesType { // a packed repeated field (checked above)
		packed, _ := protowire.ConsumeBytes(value)
		varints = varints[:0]
		for len(packed) > 0 {
			_, n := protowire.ConsumeVarint(packed)
			if n < 0 {
				return fmt.Errorf("invalid protobuf: %v", protowire.ParseError(n))
			}
			varints, packed = append(varints, packed[:n]), packed[n:]
		}
	}
	for _, raw := range varints {
		v, _ := protowire.ConsumeVarint(raw)
		if !fits32(fd.Kind(), v) {
			return fmt.Errorf("%s: value does not fit in 32 bits", name)
		}
	}
	return nil
}

// wireType is the wire type of a field of kind (unpacked).
func wireType(kind protoreflect.Kind) protowire.Type {
	switch kind {
	case protoreflect.Fixed32Kind, protoreflect.Sfixed32Kind, protoreflect.FloatKind:
		return protowire.Fixed32Type
	case protoreflect.Fixed64Kind, protoreflect.Sfixed64Kind, protoreflect.DoubleKind:
		return protowire.Fixed64Type
	case protoreflect.StringKind, protoreflect.BytesKind, protoreflect.MessageKind:
		return protowire.BytesType
	case protoreflect.GroupKind:
		return protowire.StartGroupType
	default:
		return protowire.VarintType
	}
}

// fits32 reports whether a varint decodes to a 32-bit value of kind without
// truncation.
func fits32(kind protoreflect.Kind, v uint64) bool {
	switch kind {
	case protoreflect.Uint32Kind:
		return v <= math.MaxUint32
	case protoreflect.Sint32Kind:
		s := protowire.DecodeZigZag(v)
		return s >= math.MinInt32 && s <= math.MaxInt32
	default: // int32 and enums: negative values are sign-extended to 64 bits
		s := int64(v)
		return s >= math.MinInt32 && s <= math.MaxInt32
	}
}

func messageName(md protoreflect.MessageDescriptor, path string) string {
	if path == "" {
		return string(md.Name())
	}
	return path
}

// jsonCodec is connect-go's JSON codec, except that an unknown field is an
// error naming it.
type jsonCodec struct {
	name string
}

func (c *jsonCodec) Name() string { return c.name }

func (c *jsonCodec) Marshal(m any) ([]byte, error) {
	return c.MarshalAppend(nil, m)
}

func (c *jsonCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (c *jsonCodec) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	err := protojson.UnmarshalOptions{}.Unmarshal(data, pm)
	if err == nil {
		return nil
	}
	msg := strings.TrimPrefix(err.Error(), "proto: ")
	// The two decoders differ only in unknown fields: if the lenient one
	// takes the body, the strict one failed on an unknown field, and its
	// message names it and where.
	lenient := protojson.UnmarshalOptions{DiscardUnknown: true}
	if lenient.Unmarshal(data, pm.ProtoReflect().New().Interface()) == nil {
		return fmt.Errorf("%s: this API rejects fields it does not know (check the spelling; JSON names such as productId and proto names such as product_id are both accepted)", msg)
	}
	return fmt.Errorf("invalid JSON: %s", msg)
}
