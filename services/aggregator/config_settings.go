package main

// This file is the same in services/api and services/aggregator, which
// never import each other: it turns a config struct's tags into the
// environment it reads, -h, the start-up log and the README's table.

import (
	"cmp"
	"encoding"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"blackfriday.local/contract/kafkasecurity"
)

// A setting is one environment variable, declared by a config field's
// tags: env (its name) and envDefault (its default), which
// github.com/caarlos0/env reads, and ours:
//
//   - help: what it means. A 'quoted' word is code (the README sets it in
//     backticks) and [text](path) links a document from the README;
//   - defaultText: the default, when it follows from other settings (the
//     loader then fills it in when the variable is unset);
//   - secret:"true": masked in the start-up log;
//   - verbatim:"true": taken as is, where any other value is trimmed.
type setting struct {
	name, def, defText, help string
	secret, verbatim         bool
	// field is the Go field's name, which the library's errors give.
	field string
	value reflect.Value
}

// settingsOf lists the settings a config struct declares, in order,
// nested structs included.
func settingsOf(v reflect.Value) []setting {
	var out []setting
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		switch {
		case name == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, settingsOf(v.Field(i))...)
		case name != "" && name != "-":
			out = append(out, setting{
				name: name, def: f.Tag.Get("envDefault"), defText: f.Tag.Get("defaultText"), help: f.Tag.Get("help"),
				secret: f.Tag.Get("secret") == "true", verbatim: f.Tag.Get("verbatim") == "true",
				field: f.Name, value: v.Field(i),
			})
		}
	}
	return out
}

// parse reads the settings cfg (a pointer to a config struct) declares
// through lookup, and only those. A value is trimmed unless its setting is
// verbatim, and an empty one takes the default. It returns the values it
// was given, by name, for the checks after it, and an error naming every
// variable it could not parse.
func parse(cfg any, lookup func(string) (string, bool)) (map[string]string, error) {
	settings := settingsOf(reflect.ValueOf(cfg).Elem())
	// Never nil: given no map, the library would read the process's
	// environment instead.
	given := make(map[string]string)
	for _, s := range settings {
		v, _ := lookup(s.name)
		if !s.verbatim {
			v = strings.TrimSpace(v)
		}
		if v != "" {
			given[s.name] = v
		}
	}
	err := env.ParseWithOptions(cfg, env.Options{Environment: given})
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
			if s.field != pe.Name {
				continue
			}
			// One line for each mistake in a list, each naming the variable.
			lines := strings.Split(want(pe), "\n")
			for j, why := range lines {
				lines[j] = fmt.Sprintf("%s=%q: %s", s.name, given[s.name], why)
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
		// This package's own types say what they want.
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

// list is a comma-separated list, each item trimmed, empty ones dropped.
type list []string

func (l *list) UnmarshalText(b []byte) error {
	*l = nil
	for v := range strings.SplitSeq(string(b), ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// kafkaSettings declares the Kafka SASL and TLS settings. kafkasecurity.Load
// reads and checks them into config.Kafka, with the rules and messages both
// services share; this copy is what -h, the README and the log show.
type kafkaSettings struct {
	SASLMechanism string `env:"KAFKA_SASL_MECHANISM" help:"'SCRAM-SHA-512', 'SCRAM-SHA-256' or 'PLAIN'; empty means no SASL"`
	SASLUsername  string `env:"KAFKA_SASL_USERNAME" help:"SASL user"`
	SASLPassword  string `env:"KAFKA_SASL_PASSWORD" secret:"true" verbatim:"true" help:"SASL password, taken as is: spaces may be part of it"`
	TLS           string `env:"KAFKA_TLS" envDefault:"false" help:"TLS to the brokers (1.2 minimum)"`
	TLSCAFile     string `env:"KAFKA_TLS_CA_FILE" help:"CA that verifies the brokers; empty means the system's roots"`
	TLSCertFile   string `env:"KAFKA_TLS_CERT_FILE" help:"client certificate for TLS, with 'KAFKA_TLS_KEY_FILE'"`
	TLSKeyFile    string `env:"KAFKA_TLS_KEY_FILE" help:"the client certificate's key"`
	TLSServerName string `env:"KAFKA_TLS_SERVER_NAME" help:"name each broker's certificate must hold; empty means the broker's host"`
}

// loadKafka runs kafkasecurity.Load over the values parse was given.
func loadKafka(given map[string]string) (kafkasecurity.Config, []error) {
	return kafkasecurity.Load(
		func(name, def string) string { return cmp.Or(given[name], def) },
		func(name string) (string, bool) { v, ok := given[name]; return v, ok })
}

// logValue renders the settings for the start-up log, secrets masked.
func logValue(cfg reflect.Value) slog.Value {
	var attrs []slog.Attr
	for _, s := range settingsOf(cfg) {
		var v any = s.value.Interface()
		switch x := v.(type) {
		case string:
			if s.secret && x != "" {
				v = "****"
			}
		case fmt.Stringer:
			v = x.String()
		}
		attrs = append(attrs, slog.Any(s.name, v))
	}
	return slog.GroupValue(attrs...)
}

// handleArgs reads the command line, which takes only -h (or -help,
// --help): that writes the settings to stdout, and exit tells the caller to
// stop there.
func handleArgs(cmd, about string, settings []setting, args []string, stdout io.Writer) (exit bool, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return true, writeHelp(stdout, cmd, about, settings)
	case err != nil:
		return true, fmt.Errorf("%w: settings come from the environment (%s -h lists them)", err, cmd)
	case fs.NArg() > 0:
		return true, fmt.Errorf("unexpected arguments %q: settings come from the environment (%s -h lists them)", fs.Args(), cmd)
	}
	return false, nil
}

// writeHelp lists the settings as -h shows them.
func writeHelp(w io.Writer, cmd, about string, settings []setting) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [-h]\n\n%s\n\nIt reads these environment variables once, at start (empty means the default, unless said\notherwise):\n\n", cmd, about)
	for _, s := range settings {
		fmt.Fprintf(&b, "  %s", s.name)
		switch {
		case s.def != "":
			fmt.Fprintf(&b, " (default %s)", s.def)
		case s.defText != "":
			fmt.Fprintf(&b, " (default: %s)", plain(s.defText))
		}
		b.WriteString("\n")
		wrap(&b, plain(s.describe()), "        ", 80)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describe is the setting's help, saying whether it is secret.
func (s setting) describe() string {
	if s.secret {
		return s.help + " (secret: masked in the log)"
	}
	return s.help
}

// plain turns help's links into text for a terminal.
func plain(s string) string {
	return regexp.MustCompile(`\[([^\]]*)\]\(([^)]*)\)`).ReplaceAllString(s, "$1 ($2)")
}

// wrap writes text to b in lines of at most width columns, each indented.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if line != indent && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if line != indent {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}
