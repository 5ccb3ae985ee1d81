package aggregate

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// ErrOverflow is returned when a sum or product would not fit in an int64.
// The fold refuses to wrap around, because a wrapped money total is worse
// than a stalled one.
var ErrOverflow = errors.New("int64 overflow")

// addInt64 returns a+b, or ErrOverflow if the exact sum does not fit.
func addInt64(a, b int64) (int64, error) {
	s := a + b
	// Overflow happened exactly when both operands have the same sign and
	// the sum's sign differs from theirs.
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		return 0, fmt.Errorf("%d + %d: %w", a, b, ErrOverflow)
	}
	return s, nil
}

// mulNonNegative returns a*b for non-negative a and b, or ErrOverflow if the
// exact product does not fit. Prices and quantities are validated positive
// before they get here.
func mulNonNegative(a, b int64) (int64, error) {
	if a < 0 || b < 0 {
		return 0, fmt.Errorf("%d * %d: negative operand", a, b)
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, fmt.Errorf("%d * %d: %w", a, b, ErrOverflow)
	}
	return int64(lo), nil
}
