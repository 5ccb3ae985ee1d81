package aggregate

import (
	"errors"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The field numbers of blackfriday.sales.v1.Sale and google.protobuf.Timestamp.
const (
	fieldCategory   protowire.Number = 1
	fieldProductID  protowire.Number = 2
	fieldPriceCents protowire.Number = 3
	fieldQuantity   protowire.Number = 4
	fieldSaleID     protowire.Number = 5
	fieldSoldAt     protowire.Number = 6

	fieldSeconds protowire.Number = 1
	fieldNanos   protowire.Number = 2
)

var (
	errWire        = errors.New("proto: cannot parse invalid wire-format data")
	errInvalidUTF8 = errors.New("proto: field contains invalid UTF-8")
)

// wireSale is a Sale as read off the wire, before validation. Strings alias
// the record's value.
type wireSale struct {
	category   int32
	productID  []byte
	priceCents int64
	quantity   int32
	saleID     []byte
	hasSoldAt  bool
	seconds    int64
	nanos      int32
}

// parseSale decodes the protobuf binary form of a Sale the way
// proto.Unmarshal does, without building the message: the last value of a
// scalar field wins, repeated sold_at fields merge, a field with an
// unexpected wire type is skipped like an unknown field, strings must be
// valid UTF-8, and malformed input is an error. The differential tests hold
// it to proto.Unmarshal.
func parseSale(b []byte, s *wireSale) error {
	*s = wireSale{}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		n = -1
		switch {
		case typ == protowire.VarintType && (num == fieldCategory || num == fieldPriceCents || num == fieldQuantity):
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			switch num {
			case fieldCategory:
				s.category = int32(v)
			case fieldPriceCents:
				s.priceCents = int64(v)
			case fieldQuantity:
				s.quantity = int32(v)
			}
		case typ == protowire.BytesType && (num == fieldProductID || num == fieldSaleID):
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n < 0 {
				return errWire
			}
			if !utf8.Valid(v) {
				return errInvalidUTF8
			}
			if num == fieldProductID {
				s.productID = v
			} else {
				s.saleID = v
			}
		case typ == protowire.BytesType && num == fieldSoldAt:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n < 0 {
				return errWire
			}
			s.hasSoldAt = true
			if err := parseTimestamp(v, s); err != nil {
				return err
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return errWire
			}
		}
		b = b[n:]
	}
	return nil
}

// parseTimestamp merges a google.protobuf.Timestamp into s.
func parseTimestamp(b []byte, s *wireSale) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		if typ == protowire.VarintType && (num == fieldSeconds || num == fieldNanos) {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			if num == fieldSeconds {
				s.seconds = int64(v)
			} else {
				s.nanos = int32(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
	}
	return nil
}

// consumeTag reads the tag of a message's field and rejects, as
// proto.Unmarshal does, field numbers outside the valid range and the end
// of a group: only a group may end, and no message here is in one.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, -1
	}
	num, typ := v>>3, protowire.Type(v&7)
	if num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) || typ == protowire.EndGroupType {
		return 0, 0, -1
	}
	return protowire.Number(num), typ, n
}
