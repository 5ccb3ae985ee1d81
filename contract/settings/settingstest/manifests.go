package settingstest

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"blackfriday.local/contract/settings"
)

// CheckManifests checks that every variable the kustomize manifests under
// root give service is a setting it declares: a service cannot refuse
// unknown variables at start (Kubernetes and the tools that start it add
// their own), so a misspelt one is caught here instead. The manifests name
// the service's container service and its ConfigMap generator service-env.
func CheckManifests(t testing.TB, root, service string, declared []settings.Setting) {
	t.Helper()
	known := map[string]bool{}
	for _, s := range declared {
		known[s.Name] = true
	}
	set := map[string]string{} // variable → the file that sets it
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		m := manifest{service: service, dir: filepath.Dir(path), where: path, add: func(name, where string) { set[name] = where }}
		return m.env(string(b))
	})
	if err != nil {
		t.Fatal(err)
	}
	if set["KAFKA_BROKERS"] == "" {
		t.Fatalf("found no KAFKA_BROKERS for the %s under %s: has the layout changed?", service, root)
	}
	for name, where := range set {
		// The OpenTelemetry SDK's own variables (a component's
		// OTEL_EXPORTER_OTLP_ENDPOINT) are allowed by name, each of them:
		// a misspelt one is caught as any other.
		if !known[name] && !settings.OpenTelemetry(name) {
			t.Errorf("%s sets %s for the %s, which is not one of its settings (%s -h)", where, name, service, service)
		}
	}
}

// manifest reads the variables a kustomize file sets for a service.
type manifest struct {
	service string
	// dir is the file's directory, against which its env files are read.
	dir string
	// where names the file in reports.
	where string
	add   func(name, where string)
}

// env reports the variables the YAML documents of src set for the
// service: in its ConfigMap generator's literals and env files, and in its
// container's env, inline patches included.
func (m manifest) env(src string) error {
	dec := yaml.NewDecoder(strings.NewReader(src))
	for {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.walk(doc); err != nil {
			return err
		}
	}
}

// walk reports the variables one YAML node sets for the service, at any
// depth.
func (m manifest) walk(node any) error {
	switch n := node.(type) {
	case []any:
		for _, v := range n {
			if err := m.walk(v); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, g := range items(n["configMapGenerator"], m.service+"-env") {
			for _, l := range strs(g["literals"]) {
				name, _, _ := strings.Cut(l, "=")
				m.add(name, m.where)
			}
			for _, f := range strs(g["envs"]) {
				if err := envFile(filepath.Join(m.dir, f), m.add); err != nil {
					return err
				}
			}
		}
		for _, c := range items(n["containers"], m.service) {
			for _, e := range items(c["env"], "") {
				name, _ := e["name"].(string)
				m.add(name, m.where)
			}
		}
		if p, ok := n["patch"].(string); ok {
			if err := m.env(p); err != nil {
				return err
			}
		}
		for _, v := range n {
			if err := m.walk(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// items returns the maps of a YAML list whose name is name ("" for all).
func items(node any, name string) []map[string]any {
	var out []map[string]any
	for _, v := range asList(node) {
		if m, ok := v.(map[string]any); ok && (name == "" || m["name"] == name) {
			out = append(out, m)
		}
	}
	return out
}

// strs returns the strings of a YAML list.
func strs(node any) []string {
	var out []string
	for _, v := range asList(node) {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func asList(node any) []any {
	l, _ := node.([]any)
	return l
}

// envFile reports the variables of a kustomize env file (NAME=value lines).
func envFile(path string, add func(name, where string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			name, _, _ := strings.Cut(line, "=")
			add(name, path)
		}
	}
	return sc.Err()
}
