package aggregate

import (
	"errors"
	"math"
	"testing"
)

func TestAddInt64(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b    int64
		want    int64
		wantErr bool
	}{
		{a: 1, b: 2, want: 3},
		{a: math.MaxInt64 - 1, b: 1, want: math.MaxInt64},
		{a: math.MaxInt64, b: 1, wantErr: true},
		{a: math.MaxInt64, b: math.MaxInt64, wantErr: true},
		{a: math.MinInt64, b: -1, wantErr: true},
		{a: math.MinInt64, b: math.MaxInt64, want: -1},
		{a: -5, b: 3, want: -2},
	}
	for _, tt := range tests {
		got, err := addInt64(tt.a, tt.b)
		if tt.wantErr {
			if !errors.Is(err, ErrOverflow) {
				t.Errorf("addInt64(%d, %d) error = %v, want ErrOverflow", tt.a, tt.b, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("addInt64(%d, %d) = %d, %v, want %d, nil", tt.a, tt.b, got, err, tt.want)
		}
	}
}

func TestMulNonNegative(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b    int64
		want    int64
		wantErr error
	}{
		{a: 100000000, b: 10000, want: 1000000000000},
		{a: math.MaxInt64, b: 1, want: math.MaxInt64},
		{a: math.MaxInt64/2 + 1, b: 2, wantErr: ErrOverflow},
		{a: 1 << 32, b: 1 << 31, wantErr: ErrOverflow},
		{a: 0, b: math.MaxInt64, want: 0},
	}
	for _, tt := range tests {
		got, err := mulNonNegative(tt.a, tt.b)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("mulNonNegative(%d, %d) error = %v, want %v", tt.a, tt.b, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("mulNonNegative(%d, %d) = %d, %v, want %d, nil", tt.a, tt.b, got, err, tt.want)
		}
	}
	if _, err := mulNonNegative(-1, 2); err == nil {
		t.Errorf("mulNonNegative(-1, 2) error = nil, want an error")
	}
}
