package legacy

import (
	"errors"
	"math"
	"testing"
)

func TestPriceCents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want int64
	}{
		{"532.8812345", 53288},
		{"0.125", 12},  // tie, 12 is even
		{"0.135", 14},  // tie, 14 is even
		{"2.675", 268}, // as text it is a tie; as a double it is below
		{"2.665", 266},
		{"1.005", 100},
		{"1.015", 102},
		{"1.0050000000000000001", 101}, // just above the tie
		{"1.0049999999999999999", 100},
		{"19.99", 1999},
		{"20", 2000},
		{"0.01", 1},
		{"0.005", 0}, // tie to even: zero
		{"0.0051", 1},
		{"0.004", 0},
		{"0", 0},
		{"-0", 0},
		{"-1.5", -150},
		{"-0.125", -12},
		{"5.328812345e2", 53288},
		{"5.328812345E+2", 53288},
		{"1e-2", 1},
		{"5e-3", 0},
		{"15e-3", 2},
		{"1e6", 100000000},
		{"0.000000000000000000000000001", 0},
		{"1e-999999999999999999999", 0},
		{"000012.50", 1250},
		{"92233720368547758.07", math.MaxInt64},
		{"12.344999", 1234},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			t.Parallel()
			got, err := priceCents(tt.text)
			if err != nil || got != tt.want {
				t.Errorf("priceCents(%q) = %d, %v, want %d", tt.text, got, err, tt.want)
			}
		})
	}
}

func TestPriceCentsErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want string
	}{
		{"", "must be a number"},
		{"abc", "must be a number"},
		{"1.2.3", "must be a number"},
		{"1.", "must be a number"},
		{".", "must be a number"},
		{"1e", "must be a number"},
		{"1e+", "must be a number"},
		{"--1", "must be a number"},
		{"NaN", "must be a number"},
		{"Infinity", "must be a number"},
		{"0x10", "must be a number"},
		{"1_000", "must be a number"},
		{"92233720368547758.08", "is out of range"},
		{"1e18", "is out of range"},
		{"1e999999999999999999999", "is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			t.Parallel()
			got, err := priceCents(tt.text)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != fieldPrecio || fe.Message != tt.want {
				t.Errorf("priceCents(%q) = %d, %v, want precio: %s", tt.text, got, err, tt.want)
			}
		})
	}
}

func TestFloatPriceCents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		f    float64
		want int64
	}{
		{532.8812345, 53288},
		{0.125, 12},
		{2.675, 268}, // its shortest text is 2.675, so both paths agree
		{1.005, 100},
		{19.99, 1999},
		{123.45 + 0.000049, 12345},
		{1e21, 0}, // out of range, checked below
	}
	for _, tt := range tests[:len(tests)-1] {
		got, err := floatPriceCents(tt.f)
		if err != nil || got != tt.want {
			t.Errorf("floatPriceCents(%v) = %d, %v, want %d", tt.f, got, err, tt.want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e21} {
		if got, err := floatPriceCents(f); !errors.Is(err, ErrInvalid) {
			t.Errorf("floatPriceCents(%v) = %d, %v, want an invalid precio", f, got, err)
		}
	}
}

func TestQuantity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text    string
		want    int32
		wantErr string
	}{
		{text: "13", want: 13},
		{text: "13.0", want: 13},
		{text: "1.3e1", want: 13},
		{text: "0", want: 0}, // range is the schema's business
		{text: "-2", want: -2},
		{text: "2147483647", want: math.MaxInt32},
		{text: "13.5", wantErr: "must be an integer"},
		{text: "1e-1", wantErr: "must be an integer"},
		{text: "x", wantErr: "must be an integer"},
		{text: "2147483648", wantErr: "is out of range"},
		{text: "1e30", wantErr: "is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			t.Parallel()
			got, err := quantity(tt.text)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("quantity(%q) = %d, %v, want %d", tt.text, got, err, tt.want)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != fieldCantidad || fe.Message != tt.wantErr {
				t.Errorf("quantity(%q) = %d, %v, want cantidad_vendida: %s", tt.text, got, err, tt.wantErr)
			}
		})
	}
}
