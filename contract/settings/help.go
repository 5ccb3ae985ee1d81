package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Args reads a service's command line, which takes only -h (or -help,
// --help): that writes the declared settings to stdout, and exit tells the
// caller to stop there. cmd names the service, and about introduces it.
func Args(cmd, about string, declared []Setting, args []string, stdout io.Writer) (exit bool, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return true, writeHelp(stdout, cmd, about, declared)
	case err != nil:
		return true, fmt.Errorf("%w: settings come from the environment (%s -h lists them)", err, cmd)
	case fs.NArg() > 0:
		return true, fmt.Errorf("unexpected arguments %q: settings come from the environment (%s -h lists them)", fs.Args(), cmd)
	}
	return false, nil
}

// writeHelp lists the settings as -h shows them.
func writeHelp(w io.Writer, cmd, about string, declared []Setting) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s [-h]\n\n%s\n\nIt reads these environment variables once, at start (empty means the default, unless said\notherwise):\n\n", cmd, about)
	for _, s := range declared {
		fmt.Fprintf(&b, "  %s", s.Name)
		switch {
		case s.Default != "":
			fmt.Fprintf(&b, " (default %s)", s.Default)
		case s.DefaultText != "":
			fmt.Fprintf(&b, " (default: %s)", plain(s.DefaultText))
		}
		b.WriteString("\n")
		wrap(&b, plain(s.describe()), "        ", 80)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Table renders the declared settings as the README's Markdown table.
func Table(declared []Setting) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, s := range declared {
		def := "empty"
		switch {
		case s.Default != "":
			def = "`" + s.Default + "`"
		case s.DefaultText != "":
			def = markdown(s.DefaultText)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, markdown(s.describe()))
	}
	return b.String()
}

// describe is the setting's help, saying whether it is secret.
func (s Setting) describe() string {
	if s.Secret {
		return s.Help + " (secret: masked in the log)"
	}
	return s.Help
}

var (
	// link is a Markdown link in help: [text](path).
	link = regexp.MustCompile(`\[([^\]]*)\]\(([^)]*)\)`)
	// quoted is a 'quoted' word of help. The \B keep an apostrophe (a
	// client's) from opening one.
	quoted = regexp.MustCompile(`\B'([^'\s][^']*?)'\B`)
)

// plain turns help's links into text for a terminal.
func plain(s string) string { return link.ReplaceAllString(s, "$1 ($2)") }

// markdown sets help's 'quoted' words in backticks.
func markdown(s string) string { return quoted.ReplaceAllString(s, "`$1`") }

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
