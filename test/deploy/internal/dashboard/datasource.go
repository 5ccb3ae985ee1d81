package dashboard

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Input is an entry of __inputs: what Grafana's import asks for. Import
// replaces every "${<Name>}" in the model with the answer (for a data
// source, the chosen data source's uid) and drops __inputs; provisioning
// replaces nothing.
type Input struct {
	Name     string `json:"name"`
	Label    string `json:"label"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

// Require is an entry of __requires: a plugin or Grafana version the
// dashboard needs, which import lists.
type Require struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Version string `json:"version"`
}

// Provisioned is a data source as datasources.yaml provisions it.
type Provisioned struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
	Type string `json:"type"`
}

// wholeVarRef is a value that is one variable reference and nothing else,
// as a data source uid that names a data source variable is.
var wholeVarRef = regexp.MustCompile(`^(?:\$\{(\w+)\}|\$(\w+))$`)

// refVar is the variable a data source uid refers to, or "".
func refVar(uid string) string {
	m := wholeVarRef.FindStringSubmatch(uid)
	if m == nil {
		return ""
	}
	return m[1] + m[2]
}

// text is a JSON string's value, or "" for anything else.
func text(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// DatasourceVariable returns the data source variable named name.
func (d *Dashboard) DatasourceVariable(name string) (Variable, bool) {
	for _, v := range d.Templating.List {
		if v.Name == name && v.Type == "datasource" {
			return v, true
		}
	}
	return Variable{}, false
}

// Resolve finds the provisioned data source a reference means when the
// dashboard is provisioned. A reference to a data source variable resolves
// as Grafana resolves the variable: among the data sources of the
// variable's plugin, the one whose uid is the current value, else the one
// whose name is the current text (provisioning leaves the value
// "${DS_...}" as it is, so it is the name that matches). Grafana would
// fall back to the first data source of the plugin; Resolve does not, so
// that a dashboard never works here by luck.
func (d *Dashboard) Resolve(ref *Datasource, provisioned []Provisioned) (Provisioned, error) {
	if ref == nil {
		return Provisioned{}, fmt.Errorf("no data source")
	}
	name := refVar(ref.UID)
	if name == "" {
		for _, p := range provisioned {
			if p.UID == ref.UID {
				return p, nil
			}
		}
		return Provisioned{}, fmt.Errorf("data source uid %q is not provisioned", ref.UID)
	}
	v, ok := d.DatasourceVariable(name)
	if !ok {
		return Provisioned{}, fmt.Errorf("data source %q: the dashboard has no data source variable %s", ref.UID, name)
	}
	plugin := text(v.Query)
	value, label := text(v.Current.Value), text(v.Current.Text)
	var byName *Provisioned
	for i, p := range provisioned {
		if p.Type != plugin {
			continue
		}
		if p.UID == value {
			return p, nil
		}
		if p.Name == label && byName == nil {
			byName = &provisioned[i]
		}
	}
	if byName == nil {
		return Provisioned{}, fmt.Errorf("variable %s (current value %q, text %q) names no provisioned %s data source", name, value, label, plugin)
	}
	if ref.Type != "" && ref.Type != byName.Type {
		return Provisioned{}, fmt.Errorf("data source %q has type %q, but variable %s holds a %s data source", ref.UID, ref.Type, name, byName.Type)
	}
	return *byName, nil
}

// builtin reports whether a reference names one of Grafana's own data
// sources (the annotations and dashboard queries), which exist everywhere.
func builtin(obj map[string]any) bool {
	uid, _ := obj["uid"].(string)
	typ, _ := obj["type"].(string)
	return uid == "-- Grafana --" || (typ == "grafana" && uid == "grafana") || (typ == "datasource" && uid == "grafana")
}

// DatasourceProblems lists what would keep the dashboard from working in
// another Grafana: every data source reference anywhere in the model (a
// panel's, a target's, a variable's, an annotation's) must name a data
// source variable of the dashboard, not a uid or name of ours; every data
// source variable's current value must be a "${DS_...}" input that
// __inputs declares for its plugin, so that import asks for it; and
// __requires must list Grafana, every data source plugin and every panel
// type. Whether the current text is the provisioned data source's name is
// Resolve's to check, against datasources.yaml.
func (d *Dashboard) DatasourceProblems() []string {
	var out []string
	used := map[string]int{}
	var walk func(path string, o any)
	walk = func(path string, o any) {
		switch o := o.(type) {
		case map[string]any:
			keys := make([]string, 0, len(o))
			for k := range o {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				p := path + "." + k
				if k != "datasource" {
					walk(p, o[k])
					continue
				}
				switch ref := o[k].(type) {
				case nil:
				case string:
					out = append(out, fmt.Sprintf("%s names data source %q, want {\"type\": ..., \"uid\": \"${<data source variable>}\"}", p, ref))
				case map[string]any:
					if builtin(ref) {
						continue
					}
					uid, _ := ref["uid"].(string)
					typ, _ := ref["type"].(string)
					name := refVar(uid)
					v, ok := d.DatasourceVariable(name)
					switch {
					case name == "" || !ok:
						out = append(out, fmt.Sprintf("%s names data source uid %q, want a data source variable of the dashboard (%s)", p, uid, d.datasourceVariables()))
					case typ != "" && typ != text(v.Query):
						out = append(out, fmt.Sprintf("%s has type %q, but variable %s holds %s data sources", p, typ, name, text(v.Query)))
					default:
						used[name]++
					}
				default:
					out = append(out, fmt.Sprintf("%s is %T, want a data source reference", p, ref))
				}
			}
		case []any:
			for i, e := range o {
				p := fmt.Sprintf("%s[%d]", path, i)
				if m, ok := e.(map[string]any); ok {
					if t, ok := m["title"].(string); ok {
						p += fmt.Sprintf("(%q)", t)
					} else if n, ok := m["name"].(string); ok {
						p += fmt.Sprintf("(%q)", n)
					} else if r, ok := m["refId"].(string); ok {
						p += fmt.Sprintf("(%s)", r)
					}
				}
				walk(p, e)
			}
		}
	}
	walk(d.UID, d.raw)

	for _, p := range d.AllPanels() {
		if p.Datasource == nil && len(p.Targets) > 0 {
			out = append(out, fmt.Sprintf("%s: panel %q has no data source (Grafana's default then), want a data source variable", d.UID, p.Title))
		}
	}

	inputs := map[string]Input{}
	for _, in := range d.Inputs {
		inputs[in.Name] = in
	}
	asked := map[string]bool{}
	for _, v := range d.Templating.List {
		if v.Type != "datasource" {
			continue
		}
		plugin := text(v.Query)
		value := text(v.Current.Value)
		in, ok := inputs[refVar(value)]
		switch {
		case used[v.Name] == 0:
			out = append(out, fmt.Sprintf("%s: data source variable %s is used by no panel, target or variable", d.UID, v.Name))
		case !strings.HasPrefix(value, "${") || !ok:
			out = append(out, fmt.Sprintf("%s: data source variable %s has current value %q, want \"${DS_...}\" of an __inputs entry, so that import asks for the data source", d.UID, v.Name, value))
		case in.Type != "datasource" || in.PluginID != plugin:
			out = append(out, fmt.Sprintf("%s: __inputs %s is a %s of plugin %q, want a datasource of plugin %q for variable %s", d.UID, in.Name, in.Type, in.PluginID, plugin, v.Name))
		default:
			asked[in.Name] = true
		}
		if text(v.Current.Text) == "" {
			out = append(out, fmt.Sprintf("%s: data source variable %s has no current text, want the provisioned data source's name", d.UID, v.Name))
		}
	}
	for _, in := range d.Inputs {
		if in.Type == "datasource" && !asked[in.Name] {
			out = append(out, fmt.Sprintf("%s: __inputs %s is the current value of no data source variable: import would ask for it in vain", d.UID, in.Name))
		}
	}

	required := map[string]bool{}
	for _, r := range d.Requires {
		required[r.Type+"/"+r.ID] = true
	}
	want := []string{"grafana/grafana"}
	for _, in := range d.Inputs {
		if in.Type == "datasource" {
			want = append(want, "datasource/"+in.PluginID)
		}
	}
	for _, p := range d.AllPanels() {
		want = append(want, "panel/"+p.Type)
	}
	for _, w := range want {
		if !required[w] {
			out = append(out, fmt.Sprintf("%s: __requires does not list %s", d.UID, w))
			required[w] = true
		}
	}
	return out
}

// datasourceVariables names the dashboard's data source variables, for
// messages.
func (d *Dashboard) datasourceVariables() string {
	var names []string
	for _, v := range d.Templating.List {
		if v.Type == "datasource" {
			names = append(names, "${"+v.Name+"}")
		}
	}
	if len(names) == 0 {
		return "it has none"
	}
	return strings.Join(names, ", ")
}
