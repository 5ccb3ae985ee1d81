package dashboard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Apply runs the transformations that compute values on one frame, as
// Grafana would (calculateField in binary mode, filterFieldsByName, reduce
// to rows, extractFields with a regular expression, convertFieldType), and
// fails when one names a field the frame does not have: a dashboard that
// divides a series that is not there shows nothing, or the wrong thing.
// Display-only transformations (organize, sortBy, merge) are skipped.
func Apply(f *Frame, ts []Transformation) (*Frame, error) {
	out := &Frame{Fields: append([]Field(nil), f.Fields...)}
	for _, t := range ts {
		var err error
		switch t.ID {
		case "calculateField":
			err = calculate(out, t.Options)
		case "filterFieldsByName":
			err = filter(out, t.Options)
		case "reduce":
			err = reduceToRows(out, t.Options)
		case "extractFields":
			err = extract(out, t.Options)
		case "convertFieldType":
			err = convert(out, t.Options)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.ID, err)
		}
	}
	return out, nil
}

func calculate(out *Frame, raw json.RawMessage) error {
	var o struct {
		Mode   string `json:"mode"`
		Binary struct {
			Left     string `json:"left"`
			Operator string `json:"operator"`
			Right    string `json:"right"`
		} `json:"binary"`
		Alias   string `json:"alias"`
		Replace bool   `json:"replaceFields"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return err
	}
	if o.Mode != "binary" {
		return fmt.Errorf("mode %q is not checked", o.Mode)
	}
	rows := max(out.Rows(), 1)
	nf := Field{Name: o.Alias}
	for i := range rows {
		left, err := operand(out, o.Binary.Left, i)
		if err != nil {
			return err
		}
		right, err := operand(out, o.Binary.Right, i)
		if err != nil {
			return err
		}
		var v float64
		switch o.Binary.Operator {
		case "+":
			v = left + right
		case "-":
			v = left - right
		case "*":
			v = left * right
		case "/":
			v = left / right
		default:
			return fmt.Errorf("operator %q", o.Binary.Operator)
		}
		nf.Values = append(nf.Values, v)
	}
	if o.Replace {
		out.Fields = []Field{nf}
	} else {
		out.Fields = append(out.Fields, nf)
	}
	return nil
}

func filter(out *Frame, raw json.RawMessage) error {
	var o struct {
		Include struct {
			Names []string `json:"names"`
		} `json:"include"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return err
	}
	var kept []Field
	for _, f := range out.Fields {
		for _, n := range o.Include.Names {
			if f.Name == n {
				kept = append(kept, f)
			}
		}
	}
	if len(kept) == 0 {
		return fmt.Errorf("keeps none of %v", o.Include.Names)
	}
	out.Fields = kept
	return nil
}

// reduceToRows is the reduce transformation in series-to-rows mode with
// one reducer: a row per field, "Field" naming it.
func reduceToRows(out *Frame, raw json.RawMessage) error {
	var o struct {
		Mode     string   `json:"mode"`
		Reducers []string `json:"reducers"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return err
	}
	if o.Mode != "seriesToRows" || len(o.Reducers) != 1 || o.Reducers[0] != "lastNotNull" {
		return fmt.Errorf("only seriesToRows with lastNotNull is checked, not %+v", o)
	}
	names, last := Field{Name: "Field"}, Field{Name: "Last *"}
	for _, f := range out.Fields {
		if len(f.Values) == 0 {
			continue
		}
		names.Values = append(names.Values, f.Name)
		last.Values = append(last.Values, f.Values[len(f.Values)-1])
	}
	out.Fields = []Field{names, last}
	return nil
}

// extract is extractFields with format regexp: each named group of the
// expression becomes a field.
func extract(out *Frame, raw json.RawMessage) error {
	var o struct {
		Source  string `json:"source"`
		Format  string `json:"format"`
		RegExp  string `json:"regExp"`
		Replace bool   `json:"replace"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return err
	}
	if o.Format != "regexp" {
		return fmt.Errorf("format %q is not checked", o.Format)
	}
	src := out.Field(o.Source)
	if src == nil {
		return fmt.Errorf("source field %q is not in the frame", o.Source)
	}
	expr := strings.TrimSuffix(strings.TrimPrefix(o.RegExp, "/"), "/")
	re, err := regexp.Compile(strings.ReplaceAll(expr, "(?<", "(?P<"))
	if err != nil {
		return err
	}
	cols := map[string]*Field{}
	var order []string
	for _, name := range re.SubexpNames()[1:] {
		if name != "" {
			cols[name] = &Field{Name: name}
			order = append(order, name)
		}
	}
	for _, v := range src.Values {
		m := re.FindStringSubmatch(fmt.Sprint(v))
		if m == nil {
			return fmt.Errorf("%q does not match %s", v, o.RegExp)
		}
		for i, name := range re.SubexpNames() {
			if cols[name] != nil {
				cols[name].Values = append(cols[name].Values, m[i])
			}
		}
	}
	if o.Replace {
		out.Fields = nil
	}
	for _, name := range order {
		out.Fields = append(out.Fields, *cols[name])
	}
	return nil
}

func convert(out *Frame, raw json.RawMessage) error {
	var o struct {
		Conversions []struct {
			Target string `json:"targetField"`
			Type   string `json:"destinationType"`
		} `json:"conversions"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return err
	}
	for _, c := range o.Conversions {
		f := out.Field(c.Target)
		if f == nil {
			return fmt.Errorf("field %q is not in the frame", c.Target)
		}
		if c.Type != "number" && c.Type != "time" {
			continue
		}
		for i, v := range f.Values {
			if s, ok := v.(string); ok {
				n, err := strconv.ParseFloat(s, 64)
				if err != nil {
					return fmt.Errorf("field %s: %q is not a number", c.Target, s)
				}
				f.Values[i] = n
			}
		}
	}
	return nil
}

// operand is a field's value in row i, or a number literal.
func operand(f *Frame, s string, i int) (float64, error) {
	if fl := f.Field(s); fl != nil {
		if len(fl.Values) <= i {
			return 0, fmt.Errorf("field %s has no row %d", s, i)
		}
		v, ok := fl.Values[i].(float64)
		if !ok {
			return 0, fmt.Errorf("field %s = %v, not a number", s, fl.Values[i])
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("names field %q, which the query does not return", s)
	}
	return v, nil
}
