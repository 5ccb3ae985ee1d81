// Package dashboard reads Grafana dashboards and runs their Redis data
// source queries the way the redis-datasource plugin (2.x) runs them, so a
// test can check every panel against a real Valkey.
package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"blackfriday.local/contract/keys"
)

// PluginID is the Redis data source plugin's type.
const PluginID = "redis-datasource"

// Datasource references a data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// UnmarshalJSON reads a reference, or the name that old dashboards give
// instead (kept as the uid, so that it resolves to nothing here).
func (d *Datasource) UnmarshalJSON(b []byte) error {
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		*d = Datasource{UID: name}
		return nil
	}
	type plain Datasource
	return json.Unmarshal(b, (*plain)(d))
}

// Target is one query of a panel, with the fields the plugin reads.
type Target struct {
	RefID       string      `json:"refId"`
	Datasource  *Datasource `json:"datasource"`
	Type        string      `json:"type"`
	Query       string      `json:"query"`
	Command     string      `json:"command"`
	KeyName     string      `json:"keyName"`
	Field       string      `json:"field"`
	Min         string      `json:"min"`
	Max         string      `json:"max"`
	ZRangeQuery string      `json:"zrangeQuery"`
	Start       string      `json:"start"`
	End         string      `json:"end"`
	Count       int         `json:"count"`
	Expr        string      `json:"expr"`
}

// Transformation is one step of a panel's transformations.
type Transformation struct {
	ID      string          `json:"id"`
	Options json.RawMessage `json:"options"`
}

// Panel is a panel or a row (rows may nest panels when collapsed).
type Panel struct {
	ID              int              `json:"id"`
	Type            string           `json:"type"`
	Title           string           `json:"title"`
	Datasource      *Datasource      `json:"datasource"`
	Repeat          string           `json:"repeat"`
	Targets         []Target         `json:"targets"`
	Transformations []Transformation `json:"transformations"`
	Panels          []Panel          `json:"panels"`
}

// Variable is a templating variable.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *Datasource     `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Current    struct {
		Text  json.RawMessage `json:"text"`
		Value json.RawMessage `json:"value"`
	} `json:"current"`
}

// Dashboard is the part of a dashboard JSON model the checks read.
type Dashboard struct {
	Inputs   []Input   `json:"__inputs"`
	Requires []Require `json:"__requires"`
	UID      string    `json:"uid"`
	Title    string    `json:"title"`
	Time     struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"time"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`

	// raw is the whole model, for the checks that walk all of it.
	raw any
}

// Load reads a dashboard JSON file.
func Load(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// Parse reads a dashboard JSON model.
func Parse(b []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &d.raw); err != nil {
		return nil, err
	}
	return &d, nil
}

// AllPanels flattens rows into their panels (rows themselves excluded).
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	return out
}

// CustomValues are the values of a custom variable ("a,b,c").
func (v Variable) CustomValues() []string {
	var q string
	if err := json.Unmarshal(v.Query, &q); err != nil {
		return nil
	}
	var out []string
	for _, s := range strings.Split(q, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// QueryString is a query variable's query when it is a plain string (the
// Redis plugin's variable queries are).
func (v Variable) QueryString() string {
	var q string
	_ = json.Unmarshal(v.Query, &q)
	return q
}

var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// Vars lists the variables a target refers to, sorted.
func (t Target) Vars() []string {
	seen := map[string]bool{}
	for _, s := range []string{t.Query, t.KeyName, t.Field, t.Min, t.Max, t.Start, t.End} {
		for _, m := range varRef.FindAllStringSubmatch(s, -1) {
			name := m[1] + m[2]
			if !strings.HasPrefix(name, "__") {
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Expand returns the target with variables replaced by values and every
// key prefix keys.DefaultPrefix replaced by prefix (tests share a server).
func (t Target) Expand(values map[string]string, prefix string) Target {
	sub := func(s string) string {
		s = varRef.ReplaceAllStringFunc(s, func(ref string) string {
			m := varRef.FindStringSubmatch(ref)
			if v, ok := values[m[1]+m[2]]; ok {
				return v
			}
			return ref
		})
		return s
	}
	t.KeyName = RewritePrefix(sub(t.KeyName), prefix)
	t.Query = RewritePrefix(sub(t.Query), prefix)
	t.Field, t.Min, t.Max, t.Start, t.End = sub(t.Field), sub(t.Min), sub(t.Max), sub(t.Start), sub(t.End)
	return t
}

// RewritePrefix replaces the default key prefix, keys.DefaultPrefix, of
// every word of s that starts with it: dashboards name their keys with it.
func RewritePrefix(s, prefix string) string {
	words := strings.Split(s, " ")
	for i, w := range words {
		if rest, ok := strings.CutPrefix(w, keys.DefaultPrefix); ok {
			words[i] = prefix + rest
		}
	}
	return strings.Join(words, " ")
}
