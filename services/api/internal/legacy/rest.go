package legacy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
	"blackfriday.local/services/api/internal/ingest"
)

// restOK is the course's success body, plus the sale's id: the client's own
// when it sent one.
type restOK struct {
	Estado string `json:"estado"`
	SaleID string `json:"sale_id"`
}

// restError is the error body: a Connect code, the course field at fault when
// there is one, a message, the sale's id when one was assigned, and whether
// the sale was written ("no" or "unknown", as the Sale-Recorded header).
type restError struct {
	Error    string `json:"error"`
	Field    string `json:"field,omitempty"`
	Message  string `json:"message"`
	SaleID   string `json:"sale_id,omitempty"`
	Recorded string `json:"sale_recorded"`
}

// The Sale-Recorded header of every failed course REST call, and its
// values: "no" when the sale was certainly not written, "unknown" when it
// may have been.
const (
	saleRecordedKey = "Sale-Recorded"
	recordedNo      = "no"
)

// RESTHandler serves the course's POST /venta and POST /procesar. toConnect
// is the service's one mapping from errors to Connect codes and client
// messages; maxBytes bounds the body.
func (s *Service) RESTHandler(toConnect func(error) *connect.Error, maxBytes int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeFailure(w, http.StatusMethodNotAllowed, restError{Error: connect.CodeUnimplemented.String(), Message: "use POST"})
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				writeFailure(w, http.StatusUnsupportedMediaType, restError{Error: connect.CodeInvalidArgument.String(), Message: "Content-Type must be application/json"})
				return
			}
		}
		if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
			// The course's clients never compressed; nothing here would
			// decompress, so say so rather than fail to parse.
			writeFailure(w, http.StatusUnsupportedMediaType, restError{Error: connect.CodeInvalidArgument.String(), Message: "Content-Encoding is not supported: send the body uncompressed"})
			return
		}
		sale, err := decodeVenta(http.MaxBytesReader(w, r.Body, maxBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				writeFailure(w, http.StatusRequestEntityTooLarge, restError{
					Error:   connect.CodeResourceExhausted.String(),
					Message: fmt.Sprintf("request body is larger than %d bytes", tooLarge.Limit),
				})
				return
			}
			s.writeError(w, toConnect, err)
			return
		}
		id, err := s.record(ingest.WithProtocol(r.Context(), record.ProtocolLegacyREST), sale)
		if err != nil {
			s.writeError(w, toConnect, err)
			return
		}
		writeJSON(w, http.StatusOK, restOK{Estado: "OK", SaleID: id})
	})
}

func (s *Service) writeError(w http.ResponseWriter, toConnect func(error) *connect.Error, err error) {
	ce := toConnect(err)
	body := restError{Error: ce.Code().String(), Message: ce.Message()}
	var fe *FieldError
	if errors.As(err, &fe) {
		body.Field, body.Message = fe.Field, fe.Message
	}
	var se *ingest.SaleError
	if errors.As(err, &se) {
		body.SaleID = se.SaleID
	}
	body.Recorded = ce.Meta().Get(saleRecordedKey)
	writeRESTError(w, ce, body)
}

// WriteRESTError answers a course REST call with ce, in the course API's
// error shape: the status Connect uses for the code, and a JSON body
// {"error":code,"message":…,"sale_recorded":"no"}. The server's edge uses
// it for the calls it refuses before they reach the handler (no token,
// overload), which wrote nothing.
func WriteRESTError(w http.ResponseWriter, ce *connect.Error) {
	writeRESTError(w, ce, restError{Error: ce.Code().String(), Message: ce.Message()})
}

func writeRESTError(w http.ResponseWriter, ce *connect.Error, body restError) {
	status := HTTPStatus(ce.Code())
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if v := ce.Meta().Get("WWW-Authenticate"); v != "" {
		w.Header().Set("WWW-Authenticate", v)
	}
	writeFailure(w, status, body)
}

// writeFailure answers a failed call, saying whether its sale was written
// in the Sale-Recorded header and the body's sale_recorded: "no" unless the
// failure said otherwise.
func writeFailure(w http.ResponseWriter, status int, body restError) {
	if body.Recorded == "" {
		body.Recorded = recordedNo
	}
	w.Header().Set(saleRecordedKey, body.Recorded)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// HTTPStatus is the HTTP status for a Connect code, as the Connect protocol
// maps them, so course clients see the statuses Connect JSON clients see.
func HTTPStatus(code connect.Code) int {
	switch code {
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusGatewayTimeout
	case connect.CodeNotFound:
		return http.StatusNotFound
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return http.StatusConflict
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodeResourceExhausted:
		return http.StatusTooManyRequests
	case connect.CodeUnimplemented:
		return http.StatusNotImplemented
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// decodeVenta reads the course's JSON body into a sale. Numbers are kept as
// their decimal text so that precio rounds exactly; unknown fields are
// ignored, as the course server ignored them.
func decodeVenta(body io.Reader) (*salesv1.Sale, error) {
	dec := json.NewDecoder(body)
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		if readErr := bodyReadError(err); readErr != nil {
			return nil, readErr
		}
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, &FieldError{Message: fmt.Sprintf("body is not valid JSON (at byte %d)", syntax.Offset)}
		}
		return nil, &FieldError{Message: "body must be a JSON object"}
	}
	if fields == nil {
		return nil, &FieldError{Message: "body must be a JSON object"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if readErr := bodyReadError(err); readErr != nil {
			return nil, readErr
		}
		return nil, &FieldError{Message: "body must hold a single JSON object"}
	}
	return ventaFromJSON(fields)
}

// bodyReadError returns the errors that are not about the JSON: the body was
// too large (*http.MaxBytesError), or the server refused to read more of it
// (a *connect.Error, such as its byte budget running out). Both are passed
// on as they are.
func bodyReadError(err error) error {
	var tooLarge *http.MaxBytesError
	var refused *connect.Error
	if errors.As(err, &tooLarge) || errors.As(err, &refused) {
		return err
	}
	return nil
}

// ventaFromJSON converts the decoded course fields into a sale, reporting the
// first field at fault in the course's field order.
func ventaFromJSON(fields map[string]any) (*salesv1.Sale, error) {
	sale := &salesv1.Sale{}
	var err error

	switch v := fields[fieldCategoria].(type) {
	case nil:
		return nil, &FieldError{Field: fieldCategoria, Message: "is required"}
	case string:
		sale.Category, err = categoryByName(v)
	case json.Number:
		d, perr := parseDecimal(string(v))
		if perr != nil || !d.isInteger() {
			return nil, &FieldError{Field: fieldCategoria, Message: categoryHint}
		}
		n, rerr := d.round(0)
		if rerr != nil {
			return nil, &FieldError{Field: fieldCategoria, Message: categoryHint}
		}
		sale.Category, err = categoryByNumber(n)
	default:
		return nil, &FieldError{Field: fieldCategoria, Message: categoryHint}
	}
	if err != nil {
		return nil, err
	}

	switch v := fields[fieldProducto].(type) {
	case nil:
		return nil, &FieldError{Field: fieldProducto, Message: "is required"}
	case string:
		sale.ProductId = v
	default:
		return nil, &FieldError{Field: fieldProducto, Message: "must be a string"}
	}

	switch v := fields[fieldPrecio].(type) {
	case nil:
		return nil, &FieldError{Field: fieldPrecio, Message: "is required"}
	case json.Number:
		if sale.PriceCents, err = priceCents(string(v)); err != nil {
			return nil, err
		}
	default:
		return nil, &FieldError{Field: fieldPrecio, Message: "must be a number"}
	}

	switch v := fields[fieldCantidad].(type) {
	case nil:
		return nil, &FieldError{Field: fieldCantidad, Message: "is required"}
	case json.Number:
		if sale.Quantity, err = quantity(string(v)); err != nil {
			return nil, err
		}
	default:
		return nil, &FieldError{Field: fieldCantidad, Message: "must be an integer"}
	}

	// Optional: without one (or with an empty one), the server assigns an
	// id. The schema's sale_id rules apply to it once converted.
	switch v := fields[fieldSaleID].(type) {
	case nil, string:
		sale.SaleId, _ = v.(string)
	default:
		return nil, &FieldError{Field: fieldSaleID, Message: "must be a string"}
	}
	return sale, nil
}
