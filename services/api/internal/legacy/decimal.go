package legacy

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// errNotNumber and errOutOfRange describe why a decimal text was refused.
var (
	errNotNumber  = errors.New("not a decimal number")
	errOutOfRange = errors.New("out of range")
)

// decimal is a number as written, exactly: (-1)^neg × digits × 10^exp. The
// course sends prices as JSON floats with arbitrary decimals, and rounding
// must follow the text the client wrote, not its nearest binary double
// (2.675 is 2.67499999… as a double but must round to 268 cents).
type decimal struct {
	neg    bool
	digits string // without leading zeros; "" is zero
	exp    int
}

// parseDecimal parses a JSON number, or anything strconv.FormatFloat prints
// for a finite double: an optional sign, digits with an optional fraction,
// and an optional exponent.
func parseDecimal(s string) (decimal, error) {
	var d decimal
	switch {
	case strings.HasPrefix(s, "-"):
		d.neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	mantissa, exponent, hasExp := strings.Cut(s, "e")
	if !hasExp {
		mantissa, exponent, hasExp = strings.Cut(s, "E")
	}
	whole, frac, hasPoint := strings.Cut(mantissa, ".")
	if whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) || hasPoint && frac == "" {
		return decimal{}, errNotNumber
	}
	if hasExp {
		if strings.HasPrefix(exponent, "+") {
			exponent = exponent[1:]
		}
		if e := strings.TrimPrefix(exponent, "-"); e == "" || !allDigits(e) {
			return decimal{}, errNotNumber
		}
		e, err := strconv.Atoi(exponent)
		switch {
		case err != nil && strings.HasPrefix(exponent, "-"):
			e = math.MinInt32 // so small it rounds to zero
		case err != nil:
			e = math.MaxInt32 // so large it is out of range unless zero
		}
		d.exp = max(min(e, math.MaxInt32), math.MinInt32)
	}
	d.digits = strings.TrimLeft(whole+frac, "0")
	d.exp -= len(frac)
	if d.digits == "" {
		d.neg, d.exp = false, 0
	}
	return d, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// round returns the value times 10^scale, rounded half to even to an
// integer, or errOutOfRange when that does not fit in an int64.
func (d decimal) round(scale int) (int64, error) {
	if d.digits == "" {
		return 0, nil
	}
	// intLen is how many of the digits lie before the decimal point once
	// scaled; it may be negative (a small fraction) or exceed the digits
	// (trailing zeros).
	intLen := len(d.digits) + d.exp + scale
	if intLen > 19 {
		return 0, errOutOfRange
	}
	var whole, rest string
	switch {
	case intLen <= 0:
		// All digits are fractional; below 0.1 the first rest digit is 0.
		whole = "0"
		if intLen == 0 {
			rest = d.digits
		} else {
			rest = "0"
		}
	case intLen >= len(d.digits):
		whole = d.digits + strings.Repeat("0", intLen-len(d.digits))
	default:
		whole, rest = d.digits[:intLen], d.digits[intLen:]
	}
	n, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, errOutOfRange
	}
	if roundsUp(rest, n%2 == 1) {
		n++
	}
	if n > math.MaxInt64 {
		return 0, errOutOfRange
	}
	if d.neg {
		return -int64(n), nil
	}
	return int64(n), nil
}

// roundsUp decides half-to-even rounding from the digits after the point.
func roundsUp(rest string, odd bool) bool {
	if rest == "" {
		return false
	}
	switch {
	case rest[0] > '5':
		return true
	case rest[0] < '5':
		return false
	case strings.Trim(rest[1:], "0") != "":
		return true // more than half
	default:
		return odd // exactly half: to even
	}
}

// isInteger reports whether the value has no fractional part.
func (d decimal) isInteger() bool {
	if d.exp >= 0 || d.digits == "" {
		return true
	}
	if -d.exp >= len(d.digits) {
		return false
	}
	return strings.Trim(d.digits[len(d.digits)+d.exp:], "0") == ""
}
