// Package settings turns a service's config struct into the environment it
// reads, its -h, its start-up log and the README's table of its settings.
// The api and the aggregator declare their own settings and share this
// package, so that both read, show and log them alike.
//
// A setting is one environment variable, declared by a config field's tags:
// env (its name) and envDefault (its default), which
// github.com/caarlos0/env reads, and ours:
//
//   - help: what it means. A 'quoted' word is code (the README sets it in
//     backticks) and [text](path) links a document from the README;
//   - defaultText: the default, when it follows from other settings (the
//     service fills it in when the variable is unset);
//   - secret:"true": masked in the start-up log;
//   - verbatim:"true": taken as is, where any other value is trimmed.
//
// A default that is a Go value rather than a literal (a constant of another
// package) is set in the struct before [Parse] instead of in a tag: an
// unset variable leaves it alone, and [Of] shows it as the default.
package settings

import (
	"encoding"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// A Setting is one environment variable a config struct declares.
type Setting struct {
	// Name is the variable's name, from the env tag.
	Name string
	// Default is what an unset or empty variable means: the envDefault
	// tag, or else the value the field holds before parsing.
	Default string
	// DefaultText describes a default that follows from other settings.
	DefaultText string
	Help        string
	Secret      bool
	Verbatim    bool
	// Field is the Go field's name, which the library's errors give.
	Field string

	value reflect.Value
}

// Of lists the settings cfg, a config struct or a pointer to one, declares,
// in order, nested structs included. For the defaults to show, pass it
// the config as it is before parsing.
func Of(cfg any) []Setting {
	settings := settingsOf(cfg)
	for i, s := range settings {
		if s.Default == "" && !s.value.IsZero() {
			settings[i].Default = fmt.Sprint(s.value.Interface())
		}
	}
	return settings
}

// settingsOf lists the settings cfg declares, their defaults from the
// tags alone: the values cfg holds are not defaults once it is parsed.
func settingsOf(cfg any) []Setting {
	return fieldsOf(reflect.Indirect(reflect.ValueOf(cfg)))
}

// fieldsOf lists the settings a struct value's fields declare.
func fieldsOf(v reflect.Value) []Setting {
	var out []Setting
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		switch {
		case name == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, fieldsOf(fv)...)
		case name != "" && name != "-":
			out = append(out, Setting{
				Name: name, Default: f.Tag.Get("envDefault"), DefaultText: f.Tag.Get("defaultText"), Help: f.Tag.Get("help"),
				Secret: f.Tag.Get("secret") == "true", Verbatim: f.Tag.Get("verbatim") == "true",
				Field: f.Name, value: fv,
			})
		}
	}
	return out
}

// Parse reads the settings cfg (a pointer to a config struct) declares
// through lookup, and only those. A value is trimmed unless its setting is
// verbatim, and an empty one takes the default. It returns the values it
// was given, by name, for the defaults that follow from other settings,
// and an error naming every variable it could not parse.
func Parse(cfg any, lookup func(string) (string, bool)) (given map[string]string, err error) {
	settings := settingsOf(cfg)
	// Never nil: given no map, the library would read the process's
	// environment instead.
	given = make(map[string]string)
	for _, s := range settings {
		v, _ := lookup(s.Name)
		if !s.Verbatim {
			v = strings.TrimSpace(v)
		}
		if v != "" {
			given[s.Name] = v
		}
	}
	err = env.ParseWithOptions(cfg, env.Options{Environment: given})
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return given, err
	}
	// The library names fields; a deployment knows variables.
	errs := make([]error, len(agg.Errors))
	for i, e := range agg.Errors {
		errs[i] = e
		var pe env.ParseError
		if !errors.As(e, &pe) {
			continue
		}
		for _, s := range settings {
			if s.Field != pe.Name {
				continue
			}
			// One line for each mistake in a list, each naming the variable.
			lines := strings.Split(want(pe), "\n")
			for j, why := range lines {
				lines[j] = fmt.Sprintf("%s=%q: %s", s.Name, given[s.Name], why)
			}
			errs[i] = errors.New(strings.Join(lines, "\n"))
		}
	}
	return given, errors.Join(errs...)
}

// want says what a value that failed to parse should have been.
func want(pe env.ParseError) string {
	switch t := pe.Type; {
	case t == reflect.TypeFor[slog.Level]():
		return "want debug, info, warn or error"
	case reflect.PointerTo(t).Implements(reflect.TypeFor[encoding.TextUnmarshaler]()):
		// The services' own types say what they want.
		return pe.Err.Error()
	case t == reflect.TypeFor[time.Duration]():
		return "want a duration such as 3s"
	case t.Kind() == reflect.Bool:
		return "want true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "want an integer"
	}
	return pe.Err.Error()
}

// List is a comma-separated list, each item trimmed, empty ones dropped.
type List []string

// UnmarshalText reads a comma-separated list; it never fails.
func (l *List) UnmarshalText(b []byte) error {
	*l = nil
	for v := range strings.SplitSeq(string(b), ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// LogValue renders the settings of cfg, a config struct, for the start-up
// log, secrets masked.
func LogValue(cfg any) slog.Value {
	var attrs []slog.Attr
	for _, s := range settingsOf(cfg) {
		var v any = s.value.Interface()
		switch x := v.(type) {
		case string:
			if s.Secret && x != "" {
				v = "****"
			}
		case fmt.Stringer:
			v = x.String()
		}
		attrs = append(attrs, slog.Any(s.Name, v))
	}
	return slog.GroupValue(attrs...)
}
