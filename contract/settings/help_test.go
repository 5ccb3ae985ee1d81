package settings

import (
	"bytes"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		exit     bool
		wantErr  string
		wantHelp bool
	}{
		{args: nil},
		{args: []string{"-h"}, exit: true, wantHelp: true},
		{args: []string{"-help"}, exit: true, wantHelp: true},
		{args: []string{"--help"}, exit: true, wantHelp: true},
		{args: []string{"-port=1"}, exit: true, wantErr: "flag provided but not defined: -port: settings come from the environment (svc -h lists them)"},
		{args: []string{"serve"}, exit: true, wantErr: `unexpected arguments ["serve"]: settings come from the environment (svc -h lists them)`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			exit, err := Args("svc", "svc serves.", Of(newExample()), tt.args, &out)
			if exit != tt.exit || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Errorf("Args(%q) = %v, %v; want %v, %q", tt.args, exit, err, tt.exit, tt.wantErr)
			}
			if got := out.Len() > 0; got != tt.wantHelp {
				t.Errorf("Args(%q) wrote %q, want help %v", tt.args, out.String(), tt.wantHelp)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	declared := []Setting{
		{Name: "PORT", Default: "8080", Help: "the port"},
		{Name: "SHARE", DefaultText: "a quarter of 'PORT'", Help: "see [the docs](docs/x.md#share)"},
		{Name: "SECRET", Secret: true, Help: "a password"},
		{Name: "LONG", Help: strings.Repeat("word ", 20) + "https://a.very.long.example/link/that/cannot/be/wrapped/anywhere/at/all"},
	}
	var out bytes.Buffer
	if _, err := Args("svc", "svc serves.", declared, []string{"-h"}, &out); err != nil {
		t.Fatal(err)
	}
	want := `Usage: svc [-h]

svc serves.

It reads these environment variables once, at start (empty means the default, unless said
otherwise):

  PORT (default 8080)
        the port
  SHARE (default: a quarter of 'PORT')
        see the docs (docs/x.md#share)
  SECRET
        a password (secret: masked in the log)
  LONG
        word word word word word word word word word word word word word word
        word word word word word word
        https://a.very.long.example/link/that/cannot/be/wrapped/anywhere/at/all
`
	if got := out.String(); got != want {
		t.Errorf("svc -h = %s, want %s", got, want)
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	got := Table([]Setting{
		{Name: "PORT", Default: "8080", Help: "the port; '0' picks one"},
		{Name: "SHARE", DefaultText: "a quarter of 'PORT'", Help: "see [the docs](docs/x.md#share)"},
		{Name: "SECRET", Secret: true, Help: "a password"},
	})
	want := "| variable | default | meaning |\n|---|---|---|\n" +
		"| `PORT` | `8080` | the port; `0` picks one |\n" +
		"| `SHARE` | a quarter of `PORT` | see [the docs](docs/x.md#share) |\n" +
		"| `SECRET` | empty | a password (secret: masked in the log) |\n"
	if got != want {
		t.Errorf("Table() = %s, want %s", got, want)
	}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"'0' sends at once":                          "`0` sends at once",
		"each call's latency; 'off' disables":        "each call's latency; `off` disables",
		"comma-separated 'https://host[:port]', '*'": "comma-separated `https://host[:port]`, `*`",
		"('/debug/pprof/') on 'METRICS_ADDR'":        "(`/debug/pprof/`) on `METRICS_ADDR`",
		"the system's roots, the brokers' names":     "the system's roots, the brokers' names",
	}
	for in, want := range tests {
		if got := markdown(in); got != want {
			t.Errorf("markdown(%q) = %q, want %q", in, got, want)
		}
	}
}
