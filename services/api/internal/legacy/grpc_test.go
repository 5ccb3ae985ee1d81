package legacy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"

	legacypb "blackfriday.local/gen/blackfriday"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/services/api/internal/ingest"
)

// recorder remembers the sales it was given, and fails with err.
type recorder struct {
	mu    sync.Mutex
	sales []*salesv1.Sale
	err   error
}

func (r *recorder) Record(_ context.Context, s *salesv1.Sale) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.sales = append(r.sales, s)
	return nil
}

func newService(t *testing.T, rec Recorder) *Service {
	t.Helper()
	v, err := protovalidate.New()
	if err != nil {
		t.Fatal(err)
	}
	s := New(rec, v)
	s.now = func() time.Time { return time.Unix(1_700_000_000, 0) }
	return s
}

func TestProcesarVenta(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s := newService(t, rec)
	resp, err := s.ProcesarVenta(context.Background(), &legacypb.ProductSaleRequest{
		Categoria: legacypb.CategoriaProducto_HOGAR, ProductoId: "P7", Precio: 532.8812345, CantidadVendida: 13,
	})
	if err != nil || resp.GetEstado() != "OK" {
		t.Fatalf("ProcesarVenta() = %v, %v, want estado OK", resp, err)
	}
	if len(rec.sales) != 1 {
		t.Fatalf("ProcesarVenta() recorded %d sales, want 1", len(rec.sales))
	}
	got := rec.sales[0]
	if got.GetSaleId() == "" {
		t.Errorf("recorded sale_id is empty, want a UUIDv7")
	}
	want := &salesv1.Sale{
		Category: salesv1.Category_CATEGORY_HOME, ProductId: "P7", PriceCents: 53288, Quantity: 13,
		SaleId: got.GetSaleId(), SoldAt: got.GetSoldAt(),
	}
	if !proto.Equal(got, want) || !got.GetSoldAt().AsTime().Equal(s.now()) {
		t.Errorf("recorded sale = %v, want %v sold at %v", got, want, s.now())
	}
}

func TestProcesarVentaInvalid(t *testing.T) {
	t.Parallel()
	valid := func() *legacypb.ProductSaleRequest {
		return &legacypb.ProductSaleRequest{Categoria: legacypb.CategoriaProducto_ROPA, ProductoId: "P1", Precio: 10, CantidadVendida: 1}
	}
	tests := []struct {
		name  string
		edit  func(*legacypb.ProductSaleRequest)
		field string
		msg   string
	}{
		{"unspecified categoria", func(r *legacypb.ProductSaleRequest) { r.Categoria = 0 }, "categoria", "value is required"},
		{"unknown categoria", func(r *legacypb.ProductSaleRequest) { r.Categoria = 9 }, "categoria", "value must be one of the defined enum values"},
		{"empty producto", func(r *legacypb.ProductSaleRequest) { r.ProductoId = "" }, "producto_id", "value is required"},
		{"bad producto", func(r *legacypb.ProductSaleRequest) { r.ProductoId = "-x" }, "producto_id", "does not match regex pattern `^[A-Za-z0-9][A-Za-z0-9._:-]*$`"},
		{"zero precio", func(r *legacypb.ProductSaleRequest) { r.Precio = 0.004 }, "precio", "must be greater than 0 and less than or equal to 100000000 (precio is 0 cents once rounded to cents)"},
		{"negative precio", func(r *legacypb.ProductSaleRequest) { r.Precio = -3 }, "precio", "must be greater than 0 and less than or equal to 100000000 (precio is -300 cents once rounded to cents)"},
		{"huge precio", func(r *legacypb.ProductSaleRequest) { r.Precio = 1e6 + 0.01 }, "precio", "must be greater than 0 and less than or equal to 100000000 (precio is 100000001 cents once rounded to cents)"},
		{"overflowing precio", func(r *legacypb.ProductSaleRequest) { r.Precio = 1e300 }, "precio", "is out of range"},
		{"zero cantidad", func(r *legacypb.ProductSaleRequest) { r.CantidadVendida = 0 }, "cantidad_vendida", "must be greater than or equal to 1 and less than or equal to 10000"},
		{"huge cantidad", func(r *legacypb.ProductSaleRequest) { r.CantidadVendida = 10001 }, "cantidad_vendida", "must be greater than or equal to 1 and less than or equal to 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			req := valid()
			tt.edit(req)
			resp, err := newService(t, rec).ProcesarVenta(context.Background(), req)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || fe.Message != tt.msg {
				t.Errorf("ProcesarVenta(%v) = %v, %v, want %s: %s", req, resp, err, tt.field, tt.msg)
			}
			if len(rec.sales) != 0 {
				t.Errorf("ProcesarVenta(%v) recorded %v, want nothing", req, rec.sales)
			}
		})
	}
}

func TestProcesarVentaKafkaFailure(t *testing.T) {
	t.Parallel()
	rec := &recorder{err: &ingest.SaleError{SaleID: "x", Err: ingest.ErrNotWritten}}
	resp, err := newService(t, rec).ProcesarVenta(context.Background(), &legacypb.ProductSaleRequest{
		Categoria: 1, ProductoId: "P", Precio: 1, CantidadVendida: 1,
	})
	if !errors.Is(err, ingest.ErrNotWritten) || resp != nil {
		t.Errorf("ProcesarVenta() = %v, %v, want no response and ErrNotWritten", resp, err)
	}
}
