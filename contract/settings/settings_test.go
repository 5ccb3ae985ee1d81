package settings

import (
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"
)

// size is a type of the kind a service declares, which says what it wants.
type size int64

func (n *size) UnmarshalText(b []byte) error {
	if string(b) != "big" {
		return errors.New("want big")
	}
	*n = 1 << 20
	return nil
}

// lines is a list type whose every mistake is a line of its own.
type lines []string

func (l *lines) UnmarshalText(b []byte) error {
	return errors.New("holds one mistake\nholds another")
}

type example struct {
	Port    int           `env:"PORT" envDefault:"8080" help:"the port"`
	Timeout time.Duration `env:"TIMEOUT" envDefault:"3s" help:"a timeout"`
	Prefix  string        `env:"PREFIX" help:"a default set before parsing"`
	Share   int           `env:"SHARE" defaultText:"a quarter of 'PORT'" help:"follows another setting"`
	Brokers List          `env:"BROKERS" envDefault:"a:1" help:"a list"`
	Secret  string        `env:"SECRET" secret:"true" verbatim:"true" help:"a password"`
	Size    size          `env:"SIZE" help:"a size"`
	Lines   lines         `env:"LINES" help:"a list with many mistakes"`
	Level   slog.Level    `env:"LEVEL" envDefault:"info" help:"a level"`
	On      bool          `env:"ON" envDefault:"false" help:"a switch"`
	Nested  struct {
		Inner string `env:"INNER" envDefault:"in" help:"a nested setting"`
	}
	Derived string `env:"-"`
}

// newExample returns an example holding its default that is a Go value.
func newExample() example { return example{Prefix: "bf:"} }

func lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) { v, ok := env[name]; return v, ok }
}

func TestOf(t *testing.T) {
	t.Parallel()
	var got []string
	for _, s := range Of(newExample()) {
		got = append(got, s.Name+"="+s.Default+"|"+s.DefaultText)
	}
	want := []string{
		"PORT=8080|", "TIMEOUT=3s|", "PREFIX=bf:|", "SHARE=|a quarter of 'PORT'", "BROKERS=a:1|", "SECRET=|",
		"SIZE=|", "LINES=|", "LEVEL=info|", "ON=false|", "INNER=in|",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Of() = %q, want %q", got, want)
	}
	if s := Of(&example{})[5]; s.Name != "SECRET" || !s.Secret || !s.Verbatim || s.Field != "Secret" || s.Help != "a password" {
		t.Errorf("Of()[5] = %+v, want SECRET secret and verbatim", s)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		env       map[string]string
		edit      func(*example)
		wantGiven map[string]string
	}{
		{"defaults", nil, func(*example) {}, map[string]string{}},
		{"values are trimmed, but a verbatim one", map[string]string{"PORT": " 9000\n", "SECRET": " pass word ", "BROKERS": " b:1, c:2 ,"},
			func(e *example) { e.Port, e.Secret, e.Brokers = 9000, " pass word ", List{"b:1", "c:2"} },
			map[string]string{"PORT": "9000", "SECRET": " pass word ", "BROKERS": "b:1, c:2 ,"}},
		{"empty or blank means the default", map[string]string{"PORT": "", "PREFIX": "  ", "INNER": "\t"}, func(*example) {}, map[string]string{}},
		{"a default set before parsing gives way", map[string]string{"PREFIX": "x:"}, func(e *example) { e.Prefix = "x:" },
			map[string]string{"PREFIX": "x:"}},
		{"nested", map[string]string{"INNER": "out"}, func(e *example) { e.Nested.Inner = "out" }, map[string]string{"INNER": "out"}},
		{"undeclared variables are not read", map[string]string{"DERIVED": "x", "Derived": "x", "UNKNOWN": "x"}, func(*example) {}, map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := newExample()
			given, err := Parse(&got, lookup(tt.env))
			want := example{Port: 8080, Timeout: 3 * time.Second, Prefix: "bf:", Brokers: List{"a:1"}, Level: slog.LevelInfo}
			want.Nested.Inner = "in"
			tt.edit(&want)
			if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(given, tt.wantGiven) {
				t.Errorf("Parse(%q) = %+v, given %q, %v; want %+v, given %q", tt.env, got, given, err, want, tt.wantGiven)
			}
		})
	}
}

// TestParseReadsOnlyLookup: the library would read the process's
// environment if not given one. Not parallel: it sets that environment.
func TestParseReadsOnlyLookup(t *testing.T) {
	t.Setenv("PORT", "9999")
	var e example
	if _, err := Parse(&e, lookup(nil)); err != nil || e.Port != 8080 {
		t.Errorf("Parse(nothing) with PORT=9999 in the process = port %d, %v; want 8080", e.Port, err)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"PORT": "http"}, `PORT="http": want an integer`},
		{map[string]string{"TIMEOUT": "3"}, `TIMEOUT="3": want a duration such as 3s`},
		{map[string]string{"ON": "maybe"}, `ON="maybe": want true or false`},
		{map[string]string{"LEVEL": "chatty"}, `LEVEL="chatty": want debug, info, warn or error`},
		{map[string]string{"SIZE": "small"}, `SIZE="small": want big`},
		{map[string]string{"LINES": "x"}, "LINES=\"x\": holds one mistake\nLINES=\"x\": holds another"},
		{map[string]string{"PORT": " http ", "ON": "maybe"}, "PORT=\"http\": want an integer\nON=\"maybe\": want true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			var e example
			if _, err := Parse(&e, lookup(tt.env)); err == nil || err.Error() != tt.want {
				t.Errorf("Parse(%q) = %v, want %q", tt.env, err, tt.want)
			}
		})
	}
}

func TestLogValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"defaults", nil, `"PORT":8080,"TIMEOUT":"3s","PREFIX":"bf:","SHARE":0,"BROKERS":["a:1"],"SECRET":"",` +
			`"SIZE":0,"LINES":null,"LEVEL":"INFO","ON":false,"INNER":"in"}`},
		{"a secret set", map[string]string{"SECRET": "hunter2"}, `"SECRET":"****"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newExample()
			if _, err := Parse(&e, lookup(tt.env)); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", LogValue(e))
			if log := b.String(); !strings.Contains(log, tt.want) || strings.Contains(log, "hunter2") {
				t.Errorf("logged %s, want it to hold %s and no secret", log, tt.want)
			}
		})
	}
}
