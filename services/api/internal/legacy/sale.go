// Package legacy serves the course's sales API, REST and gRPC, unchanged for
// its clients, and feeds its sales into the same ingest path as the native
// API: each becomes an ordinary blackfriday.sales.v1.Sale.
package legacy

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"buf.build/go/protovalidate"

	"blackfriday.local/gen/blackfriday/blackfridayconnect"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/services/api/internal/ingest"
)

// The course's field names, used in every error a course client sees, and
// sale_id, our extension of the course's REST body: an optional id of the
// client's, so that a retry of a sale can be counted once.
const (
	fieldCategoria = "categoria"
	fieldProducto  = "producto_id"
	fieldPrecio    = "precio"
	fieldCantidad  = "cantidad_vendida"
	fieldSaleID    = "sale_id"
)

// ErrInvalid is wrapped by every *FieldError: the course sale is invalid and
// nothing was written.
var ErrInvalid = errors.New("invalid course sale")

// FieldError names the course field that made a sale invalid.
type FieldError struct {
	// Field is the course's field name, such as "precio"; empty when the
	// body as a whole is at fault.
	Field string
	// Message says what is wrong, for the client.
	Message string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Recorder writes a complete, valid sale and returns once Kafka has
// acknowledged it.
type Recorder interface {
	Record(ctx context.Context, sale *salesv1.Sale) error
}

// Service serves the course API over the given Recorder.
type Service struct {
	blackfridayconnect.UnimplementedProductSaleServiceHandler

	rec       Recorder
	validator protovalidate.Validator
	now       func() time.Time
}

// New returns a Service. validator checks the converted sale against the
// rules in the sales/v1 schema, so both APIs accept exactly the same sales.
func New(rec Recorder, validator protovalidate.Validator) *Service {
	return &Service{rec: rec, validator: validator, now: time.Now}
}

// record completes, validates and writes a converted sale, returning its id.
func (s *Service) record(ctx context.Context, sale *salesv1.Sale) (string, error) {
	if err := ingest.Stamp(sale, s.now()); err != nil {
		return "", err
	}
	if err := s.validator.Validate(sale); err != nil {
		return "", courseError(err, sale)
	}
	if err := s.rec.Record(ctx, sale); err != nil {
		return "", err
	}
	return sale.GetSaleId(), nil
}

// courseField maps a sales/v1 field that a course sale fills to the course's
// name for it.
func courseField(field string) string {
	switch field {
	case "category":
		return fieldCategoria
	case "product_id":
		return fieldProducto
	case "price_cents":
		return fieldPrecio
	case "quantity":
		return fieldCantidad
	default:
		return field
	}
}

// courseError turns a validation failure of the converted sale into a
// FieldError naming the course field.
func courseError(err error, sale *salesv1.Sale) error {
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) || len(verr.Violations) == 0 || verr.Violations[0].Proto == nil {
		return fmt.Errorf("validate converted sale: %w", err)
	}
	v := verr.Violations[0].Proto
	field := courseField(protovalidate.FieldPathString(v.GetField()))
	msg := v.GetMessage()
	if field == fieldPrecio {
		// The rules are in cents; say what the price became.
		msg = fmt.Sprintf("%s (precio is %d cents once rounded to cents)", msg, sale.GetPriceCents())
	}
	return &FieldError{Field: field, Message: msg}
}

// priceCents rounds a decimal price text half to even to whole cents.
func priceCents(text string) (int64, error) {
	d, err := parseDecimal(text)
	if err != nil {
		return 0, &FieldError{Field: fieldPrecio, Message: "must be a number"}
	}
	cents, err := d.round(2)
	if err != nil {
		return 0, &FieldError{Field: fieldPrecio, Message: "is out of range"}
	}
	return cents, nil
}

// floatPriceCents rounds a double price to cents through its shortest
// decimal representation, the text a JSON client would have sent, so that
// the REST and gRPC paths round the same price the same way.
func floatPriceCents(f float64) (int64, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, &FieldError{Field: fieldPrecio, Message: "must be a finite number"}
	}
	return priceCents(strconv.FormatFloat(f, 'g', -1, 64))
}

// quantity parses cantidad_vendida, which must be an integer.
func quantity(text string) (int32, error) {
	d, err := parseDecimal(text)
	if err != nil {
		return 0, &FieldError{Field: fieldCantidad, Message: "must be an integer"}
	}
	if !d.isInteger() {
		return 0, &FieldError{Field: fieldCantidad, Message: "must be an integer"}
	}
	n, err := d.round(0)
	if err != nil || n < math.MinInt32 || n > math.MaxInt32 {
		return 0, &FieldError{Field: fieldCantidad, Message: "is out of range"}
	}
	return int32(n), nil
}

// categoryNamed maps a course category name, lower-cased and without
// accents, to its category.
func categoryNamed(key string) (salesv1.Category, bool) {
	switch key {
	case "electronica":
		return salesv1.Category_CATEGORY_ELECTRONICS, true
	case "ropa":
		return salesv1.Category_CATEGORY_CLOTHING, true
	case "hogar":
		return salesv1.Category_CATEGORY_HOME, true
	case "belleza":
		return salesv1.Category_CATEGORY_BEAUTY, true
	default:
		return 0, false
	}
}

// foldAccents removes the accents the course's Spanish names may carry, in
// precomposed or combining form ("Electrónica").
func foldAccents(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case 'á':
			return 'a'
		case 'é':
			return 'e'
		case 'í':
			return 'i'
		case 'ó':
			return 'o'
		case 'ú':
			return 'u'
		case '\u0301': // combining acute accent
			return -1
		default:
			return r
		}
	}, s)
}

const categoryHint = "must be one of Electronica, Ropa, Hogar, Belleza, or 1 to 4"

// categoryByName matches a course category name case-insensitively, with or
// without accents; the digits 1 to 4 are accepted as well.
func categoryByName(name string) (salesv1.Category, error) {
	key := foldAccents(strings.ToLower(strings.TrimSpace(name)))
	if c, ok := categoryNamed(key); ok {
		return c, nil
	}
	if n, err := strconv.Atoi(key); err == nil {
		return categoryByNumber(int64(n))
	}
	return 0, &FieldError{Field: fieldCategoria, Message: categoryHint}
}

// categoryByNumber accepts the course enum's numbers, 1 to 4.
func categoryByNumber(n int64) (salesv1.Category, error) {
	if n < 1 || n > 4 {
		return 0, &FieldError{Field: fieldCategoria, Message: categoryHint}
	}
	return salesv1.Category(n), nil
}
