package legacy

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

func TestDecodeVenta(t *testing.T) {
	t.Parallel()
	sale := func(c salesv1.Category, id string, cents int64, q int32) *salesv1.Sale {
		return &salesv1.Sale{Category: c, ProductId: id, PriceCents: cents, Quantity: q}
	}
	const (
		elec   = salesv1.Category_CATEGORY_ELECTRONICS
		ropa   = salesv1.Category_CATEGORY_CLOTHING
		hogar  = salesv1.Category_CATEGORY_HOME
		beauty = salesv1.Category_CATEGORY_BEAUTY
	)
	tests := []struct {
		name string
		body string
		want *salesv1.Sale
	}{
		{"course example", `{"categoria":"Electronica","producto_id":"P7","precio":532.8812345,"cantidad_vendida":13}`, sale(elec, "P7", 53288, 13)},
		{"accented", `{"categoria":"Electrónica","producto_id":"P7","precio":1,"cantidad_vendida":1}`, sale(elec, "P7", 100, 1)},
		{"combining accent", "{\"categoria\":\"Electro\u0301nica\",\"producto_id\":\"P7\",\"precio\":1,\"cantidad_vendida\":1}", sale(elec, "P7", 100, 1)},
		{"upper case", `{"categoria":"ROPA","producto_id":"R1","precio":10.5,"cantidad_vendida":2}`, sale(ropa, "R1", 1050, 2)},
		{"upper case accented", `{"categoria":"ELECTRÓNICA","producto_id":"E","precio":10.5,"cantidad_vendida":2}`, sale(elec, "E", 1050, 2)},
		{"lower case", `{"categoria":"hogar","producto_id":"H1","precio":0.125,"cantidad_vendida":3}`, sale(hogar, "H1", 12, 3)},
		{"padded name", `{"categoria":" Belleza ","producto_id":"B1","precio":2.675,"cantidad_vendida":4}`, sale(beauty, "B1", 268, 4)},
		{"number", `{"categoria":4,"producto_id":"B1","precio":1,"cantidad_vendida":1}`, sale(beauty, "B1", 100, 1)},
		{"number as float", `{"categoria":2.0,"producto_id":"R","precio":1,"cantidad_vendida":1}`, sale(ropa, "R", 100, 1)},
		{"digit string", `{"categoria":"3","producto_id":"H","precio":1,"cantidad_vendida":1}`, sale(hogar, "H", 100, 1)},
		{"unknown fields ignored", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":1,"tienda":"X","extra":{"a":[1]}}`, sale(elec, "P", 100, 1)},
		{"integral quantity", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":13.0}`, sale(elec, "P", 100, 13)},
		{"exponent price", `{"categoria":1,"producto_id":"P","precio":5.328812345e2,"cantidad_vendida":1}`, sale(elec, "P", 53288, 1)},
		// Range checks belong to the schema, after conversion.
		{"zero price converts", `{"categoria":1,"producto_id":"P","precio":0,"cantidad_vendida":1}`, sale(elec, "P", 0, 1)},
		{"negative price converts", `{"categoria":1,"producto_id":"P","precio":-1.005,"cantidad_vendida":1}`, sale(elec, "P", -100, 1)},
		{"trailing space", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":1}` + "\n  ", sale(elec, "P", 100, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeVenta(strings.NewReader(tt.body))
			if err != nil || !proto.Equal(got, tt.want) {
				t.Errorf("decodeVenta(%s) = %v, %v, want %v", tt.body, got, err, tt.want)
			}
		})
	}
}

func TestDecodeVentaErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		wantField string
		wantMsg   string
	}{
		{"not json", `categoria=1`, "", "body is not valid JSON (at byte 1)"},
		{"truncated", `{"categoria":1`, "", "body must be a JSON object"},
		{"array", `[1,2]`, "", "body must be a JSON object"},
		{"null", `null`, "", "body must be a JSON object"},
		{"two objects", `{"categoria":1} {}`, "", "body must hold a single JSON object"},
		{"empty", ``, "", "body must be a JSON object"},
		{"missing categoria", `{"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", "is required"},
		{"null categoria", `{"categoria":null,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", "is required"},
		{"unknown categoria", `{"categoria":"Juguetes","producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"categoria zero", `{"categoria":0,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"categoria five", `{"categoria":5,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"categoria fraction", `{"categoria":1.5,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"categoria huge", `{"categoria":1e400,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"categoria bool", `{"categoria":true,"producto_id":"P","precio":1,"cantidad_vendida":1}`, "categoria", categoryHint},
		{"missing producto", `{"categoria":1,"precio":1,"cantidad_vendida":1}`, "producto_id", "is required"},
		{"numeric producto", `{"categoria":1,"producto_id":7,"precio":1,"cantidad_vendida":1}`, "producto_id", "must be a string"},
		{"missing precio", `{"categoria":1,"producto_id":"P","cantidad_vendida":1}`, "precio", "is required"},
		{"string precio", `{"categoria":1,"producto_id":"P","precio":"532.88","cantidad_vendida":1}`, "precio", "must be a number"},
		{"NaN-like precio", `{"categoria":1,"producto_id":"P","precio":"NaN","cantidad_vendida":1}`, "precio", "must be a number"},
		{"object precio", `{"categoria":1,"producto_id":"P","precio":{"v":1},"cantidad_vendida":1}`, "precio", "must be a number"},
		{"overflowing precio", `{"categoria":1,"producto_id":"P","precio":1e300,"cantidad_vendida":1}`, "precio", "is out of range"},
		{"missing cantidad", `{"categoria":1,"producto_id":"P","precio":1}`, "cantidad_vendida", "is required"},
		{"fractional cantidad", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":1.5}`, "cantidad_vendida", "must be an integer"},
		{"string cantidad", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":"3"}`, "cantidad_vendida", "must be an integer"},
		{"overflowing cantidad", `{"categoria":1,"producto_id":"P","precio":1,"cantidad_vendida":99999999999}`, "cantidad_vendida", "is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeVenta(strings.NewReader(tt.body))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField || fe.Message != tt.wantMsg || !errors.Is(err, ErrInvalid) {
				t.Errorf("decodeVenta(%s) = %v, %v, want field %q message %q", tt.body, got, err, tt.wantField, tt.wantMsg)
			}
		})
	}
}

func TestCategoryByName(t *testing.T) {
	t.Parallel()
	tests := map[string]salesv1.Category{
		"Electronica": salesv1.Category_CATEGORY_ELECTRONICS,
		"electrónica": salesv1.Category_CATEGORY_ELECTRONICS,
		"ELECTRONICA": salesv1.Category_CATEGORY_ELECTRONICS,
		"eLeCtRoNiCa": salesv1.Category_CATEGORY_ELECTRONICS,
		"Ropa":        salesv1.Category_CATEGORY_CLOTHING,
		"HOGAR":       salesv1.Category_CATEGORY_HOME,
		"belleza":     salesv1.Category_CATEGORY_BEAUTY,
		"1":           salesv1.Category_CATEGORY_ELECTRONICS,
		"4":           salesv1.Category_CATEGORY_BEAUTY,
	}
	for name, want := range tests {
		if got, err := categoryByName(name); err != nil || got != want {
			t.Errorf("categoryByName(%q) = %v, %v, want %v", name, got, err, want)
		}
	}
	for _, name := range []string{"", "Electronics", "0", "5", "-1", "ropa s"} {
		if got, err := categoryByName(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("categoryByName(%q) = %v, %v, want an invalid categoria", name, got, err)
		}
	}
}

// failingReader fails every read with err.
type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// TestDecodeVentaReadErrors passes on the errors that are not about the
// JSON: a body over the size cap, and a read the server refused (its byte
// budget ran out); any other read failure is the client's.
func TestDecodeVentaReadErrors(t *testing.T) {
	t.Parallel()
	refused := connect.NewError(connect.CodeResourceExhausted, errors.New("busy"))
	tooLarge := &http.MaxBytesError{Limit: 10}
	tests := []struct {
		name string
		body io.Reader
		want error
	}{
		{"refused at once", failingReader{refused}, refused},
		{"too large at once", failingReader{tooLarge}, tooLarge},
		{"refused after the object", io.MultiReader(strings.NewReader(`{"categoria":1}`), failingReader{refused}), refused},
	}
	for _, tt := range tests {
		if _, err := decodeVenta(tt.body); !errors.Is(err, tt.want) {
			t.Errorf("decodeVenta(%s) = %v, want %v", tt.name, err, tt.want)
		}
	}
	_, err := decodeVenta(failingReader{errors.New("connection reset")})
	if fe := new(FieldError); !errors.As(err, &fe) {
		t.Errorf("decodeVenta(a reset connection) = %v, want a FieldError", err)
	}
}
