package legacy

// Fuzz targets for the course's REST parser: whole bodies (FuzzDecodeVenta)
// and the exact decimal rounding of precio against math/big
// (FuzzPriceCents). Seed corpora live in testdata/fuzz/; make
// fuzz-api-short runs each target briefly.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// decimalText is the grammar parseDecimal accepts: a sign, digits with an
// optional fraction (or a fraction alone), and an optional exponent.
var decimalText = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]+)?|\.[0-9]+)([eE][+-]?[0-9]+)?$`)

// roundHalfEvenCents is the oracle: text × 100 rounded half to even, by
// math/big, or ok false when it does not fit in an int64. It skips (ok and
// skip both false) exponents too large for big.Rat to expand cheaply.
func roundHalfEvenCents(text string) (cents int64, ok, skip bool) {
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		exp := strings.TrimLeft(strings.TrimLeft(text[i+1:], "+-"), "0")
		if len(exp) > 3 {
			return 0, false, true
		}
	}
	r, set := new(big.Rat).SetString(text)
	if !set {
		return 0, false, true
	}
	r.Mul(r, big.NewRat(100, 1))
	num, den := new(big.Int).Set(r.Num()), r.Denom()
	neg := num.Sign() < 0
	num.Abs(num)
	q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	switch c := new(big.Int).Lsh(rem, 1).Cmp(den); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, false, false
	}
	if neg {
		q.Neg(q)
	}
	return q.Int64(), true, false
}

// FuzzPriceCents checks the exact rounding of prices against math/big:
// every text of the grammar rounds half to even to the cents big.Rat
// computes, or is out of range exactly when they exceed an int64; every
// other text is refused as not a number.
func FuzzPriceCents(f *testing.F) {
	for _, s := range []string{
		"532.8812345", "0.125", "2.675", "1.005", "-1.5", "5.328812345e2", "1e-2", "15e-3",
		"92233720368547758.07", "92233720368547758.08", "1e308", "1e-999999", ".5", "1.", "+1", "NaN", "0x10", "1_0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got, err := priceCents(text)
		var fe *FieldError
		if err != nil && (!errors.As(err, &fe) || fe.Field != fieldPrecio) {
			t.Fatalf("priceCents(%q) = %v, want a FieldError on precio", text, err)
		}
		if !decimalText.MatchString(text) {
			if err == nil || fe.Message != "must be a number" {
				t.Fatalf("priceCents(%q) = %d, %v, want must be a number", text, got, err)
			}
			return
		}
		want, ok, skip := roundHalfEvenCents(text)
		switch {
		case skip:
			return
		case !ok:
			if err == nil || fe.Message != "is out of range" {
				t.Fatalf("priceCents(%q) = %d, %v, want out of range", text, got, err)
			}
		case err != nil || got != want:
			t.Fatalf("priceCents(%q) = %d, %v, want %d", text, got, err, want)
		}
	})
}

// FuzzDecodeVenta sends arbitrary bodies to the course's REST parser. It
// never panics; a refusal is a FieldError naming a course field (or the
// body); an accepted body is a JSON object whose fields convert exactly:
// the category by name or number, the product id as sent, precio rounded
// half to even, cantidad_vendida an integer.
func FuzzDecodeVenta(f *testing.F) {
	for _, s := range []string{
		`{"categoria":"Electronica","producto_id":"P7","precio":532.8812345,"cantidad_vendida":13}`,
		`{"categoria":"ELECTRÓNICA","producto_id":"P7","precio":1e308,"cantidad_vendida":1}`,
		`{"categoria":4,"producto_id":"B1","precio":2.675,"cantidad_vendida":13.0,"tienda":"x"}`,
		`{"categoria":"3","producto_id":"P\n","precio":-0.004,"cantidad_vendida":99999999999}`,
		`{"categoria":1.5,"producto_id":7,"precio":"NaN","cantidad_vendida":"3"}`,
		`{"categoria":1} {}`,
		"{\"categoria\":\"Ropa\",\"producto_id\":\"P\xff\",\"precio\":1,\"cantidad_vendida\":1}",
		`[1,2]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sale, err := decodeVenta(bytes.NewReader(body))
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("decodeVenta(%q) = %v, want a FieldError", body, err)
			}
			switch fe.Field {
			case "", fieldCategoria, fieldProducto, fieldPrecio, fieldCantidad:
			default:
				t.Fatalf("decodeVenta(%q) names field %q", body, fe.Field)
			}
			return
		}
		// Accepted: the body is one JSON object, and each field converts
		// as the course defines.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var fields map[string]any
		if err := dec.Decode(&fields); err != nil || fields == nil {
			t.Fatalf("decodeVenta(%q) accepted a body that is not a JSON object: %v", body, err)
		}
		if c := sale.GetCategory(); c < 1 || c > 4 {
			t.Fatalf("decodeVenta(%q) category = %v, want 1 to 4", body, c)
		}
		id, _ := fields[fieldProducto].(string)
		if sale.GetProductId() != id || !utf8.ValidString(sale.GetProductId()) {
			t.Fatalf("decodeVenta(%q) product = %q, want %q", body, sale.GetProductId(), id)
		}
		precio, _ := fields[fieldPrecio].(json.Number)
		if want, ok, skip := roundHalfEvenCents(string(precio)); !skip && (!ok || sale.GetPriceCents() != want) {
			t.Fatalf("decodeVenta(%q) price = %d, want %d (in range: %v)", body, sale.GetPriceCents(), want, ok)
		}
		cantidad, _ := fields[fieldCantidad].(json.Number)
		if f, err := strconv.ParseFloat(string(cantidad), 64); err == nil && !math.IsInf(f, 0) && f != float64(sale.GetQuantity()) {
			t.Fatalf("decodeVenta(%q) quantity = %d, want %v", body, sale.GetQuantity(), f)
		}
	})
}
