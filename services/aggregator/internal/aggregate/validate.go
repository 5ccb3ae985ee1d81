package aggregate

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The rules of blackfriday.sales.v1.Sale (proto/blackfriday/sales/v1/sale.proto),
// written out by hand: protovalidate's CEL evaluation cost three quarters of
// the aggregator's CPU. The api still validates with protovalidate; the
// differential tests (FuzzDecode, TestValidateMatchesProtovalidate) hold
// this code to protovalidate's verdicts, and TestSaleRulesUnchanged fails
// when the rules in the proto change.
const (
	maxIDLen      = 64
	maxPriceCents = 100000000
	maxQuantity   = 10000
	// minSoldAt is 2000-01-01T00:00:00Z: sold_at must be after it.
	minSoldAt = 946684800
	// maxFuture is how far past "now" sold_at may be (see validationNow
	// for the "now" a record is judged against).
	maxFuture = time.Hour
	// celMaxUnix is the last second CEL can represent
	// (9999-12-31T23:59:59Z); computing "now + 1h" past it is an error.
	celMaxUnix = 253402300799
	celMinUnix = -62135596800
)

// violation is one broken rule: the field, protovalidate's rule id and its
// message.
type violation struct {
	field, rule, message string
}

// validationError lists the rules a sale breaks, worded as protovalidate
// words them, so dead letters read the same as before.
type validationError struct {
	violations []violation
}

func (e *validationError) Error() string {
	var b strings.Builder
	if len(e.violations) == 1 {
		b.WriteString("validation error: ")
	} else {
		b.WriteString("validation errors:")
	}
	for _, v := range e.violations {
		if len(e.violations) > 1 {
			b.WriteString("\n - ")
		}
		b.WriteString(v.field)
		b.WriteString(": ")
		b.WriteString(v.message)
	}
	return b.String()
}

const idPatternMessage = "does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"

// validateSale checks a decoded sale against the rules, with now as
// protovalidate's "now". It returns nil or a *validationError, in the
// order protovalidate reports violations (by field number).
func validateSale(s *wireSale, now time.Time) error {
	var vs []violation
	switch {
	case s.category == 0:
		vs = append(vs, violation{"category", "required", "value is required"})
	case s.category < 1 || s.category > 4:
		vs = append(vs, violation{"category", "enum.defined_only", "value must be one of the defined enum values"})
	}
	if len(s.productID) == 0 {
		vs = append(vs, violation{"product_id", "required", "value is required"})
	} else {
		vs = checkID(vs, "product_id", s.productID)
	}
	if s.priceCents <= 0 || s.priceCents > maxPriceCents {
		vs = append(vs, violation{"price_cents", "int64.gt_lte", "must be greater than 0 and less than or equal to 100000000"})
	}
	if s.quantity < 1 || s.quantity > maxQuantity {
		vs = append(vs, violation{"quantity", "int32.gte_lte", "must be greater than or equal to 1 and less than or equal to 10000"})
	}
	// An empty sale_id is ignored (IGNORE_IF_ZERO_VALUE).
	if len(s.saleID) > 0 {
		vs = checkID(vs, "sale_id", s.saleID)
	}
	if s.hasSoldAt {
		// Timestamps compare as protovalidate converts them: through
		// time.Unix, which normalises out-of-range nanos. protovalidate
		// reports the field's CEL rule before its standard timestamp rule.
		soldAt := time.Unix(s.seconds, int64(s.nanos))
		limit, ok := celAddHour(now)
		if !ok {
			// CEL fails to compute "now + 1h" out of its range; protovalidate
			// then answers a runtime error rather than a verdict.
			vs = append(vs, violation{"sold_at", "sold_at.not_future", "cannot evaluate: timestamp overflow"})
		} else if soldAt.After(limit) {
			vs = append(vs, violation{"sold_at", "sold_at.not_future", "must not be more than one hour in the future"})
		}
		if !soldAt.After(time.Unix(minSoldAt, 0)) {
			vs = append(vs, violation{"sold_at", "timestamp.gt", "must be greater than 2000-01-01T00:00:00Z"})
		}
	}
	if len(vs) == 0 {
		return nil
	}
	return &validationError{violations: vs}
}

// checkID applies the max_len and pattern rules of product_id and sale_id.
func checkID(vs []violation, field string, id []byte) []violation {
	if utf8.RuneCount(id) > maxIDLen {
		vs = append(vs, violation{field, "string.max_len", "must be at most " + strconv.Itoa(maxIDLen) + " characters"})
	}
	if !idPattern(id) {
		vs = append(vs, violation{field, "string.pattern", idPatternMessage})
	}
	return vs
}

// idPattern reports whether id matches ^[A-Za-z0-9][A-Za-z0-9._:-]*$.
func idPattern(id []byte) bool {
	if len(id) == 0 || !alnum(id[0]) {
		return false
	}
	for _, c := range id[1:] {
		if !idByte(c) {
			return false
		}
	}
	return true
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// The bytes an id may hold after its first, as bit sets over 0-63 and
// 64-127.
const (
	idBytesLow  = (1<<10-1)<<'0' | 1<<'.' | 1<<':' | 1<<'-'
	idBytesHigh = (1<<26-1)<<('A'-64) | (1<<26-1)<<('a'-64) | 1<<('_'-64)
)

func idByte(c byte) bool {
	if c < 64 {
		return idBytesLow>>c&1 == 1
	}
	return c < 128 && idBytesHigh>>(c-64)&1 == 1
}

// celAddHour computes now + 1h as CEL does, reporting false where CEL
// reports a timestamp overflow.
func celAddHour(now time.Time) (time.Time, bool) {
	t := now.Add(maxFuture)
	sec := now.Truncate(time.Second).Unix() + int64(maxFuture/time.Second)
	if sec < celMinUnix || sec > celMaxUnix || !t.After(now) {
		return time.Time{}, false
	}
	return t, true
}
