package main

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestManifestsSetOnlySettings checks that every variable the kustomize
// manifests give the service is a setting it declares: the service cannot
// refuse unknown variables at start (Kubernetes and the tools that start it
// add their own), so a misspelt one is caught here instead.
func TestManifestsSetOnlySettings(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	for _, s := range declared() {
		known[s.name] = true
	}
	set := map[string]string{} // variable → the file that sets it
	root := filepath.Join("..", "..", "kustomize")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return manifestEnv(string(b), filepath.Dir(path), path, func(name, where string) { set[name] = where })
	})
	if err != nil {
		t.Fatal(err)
	}
	if set["KAFKA_BROKERS"] == "" {
		t.Fatalf("found no KAFKA_BROKERS for the %s under %s: has the layout changed?", service, root)
	}
	for name, where := range set {
		if !known[name] {
			t.Errorf("%s sets %s for the %s, which is not one of its settings (%s -h)", where, name, service, service)
		}
	}
}

// manifestEnv reports the variables a file's YAML documents set for the
// service: in its ConfigMap generator's literals and env files, and in its
// container's env, inline patches included.
func manifestEnv(src, dir, where string, add func(name, where string)) error {
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
		if err := walkEnv(doc, dir, where, add); err != nil {
			return err
		}
	}
}

func walkEnv(node any, dir, where string, add func(name, where string)) error {
	switch n := node.(type) {
	case []any:
		for _, v := range n {
			if err := walkEnv(v, dir, where, add); err != nil {
				return err
			}
		}
	case map[string]any:
		for _, g := range items(n["configMapGenerator"], service+"-env") {
			for _, l := range strs(g["literals"]) {
				name, _, _ := strings.Cut(l, "=")
				add(name, where)
			}
			for _, f := range strs(g["envs"]) {
				if err := envFile(filepath.Join(dir, f), add); err != nil {
					return err
				}
			}
		}
		for _, c := range items(n["containers"], service) {
			for _, e := range items(c["env"], "") {
				name, _ := e["name"].(string)
				add(name, where)
			}
		}
		if p, ok := n["patch"].(string); ok {
			if err := manifestEnv(p, dir, where, add); err != nil {
				return err
			}
		}
		for _, v := range n {
			if err := walkEnv(v, dir, where, add); err != nil {
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

func TestManifestEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte("# comment\nFROM_FILE=1\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `configMapGenerator:
  - name: ` + service + `-env
    envs: [env]
    literals: [FROM_LITERAL=x]
  - name: other-env
    literals: [NOT_OURS=x]
patches:
  - patch: |-
      kind: Deployment
      spec:
        template:
          spec:
            containers:
              - name: ` + service + `
                env:
                  - name: FROM_PATCH
---
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: ` + service + `
          env:
            - name: FROM_CONTAINER
              valueFrom: {secretKeyRef: {name: s, key: k}}
        - name: sidecar
          env:
            - name: NOT_OURS_EITHER
`
	got := map[string]bool{}
	if err := manifestEnv(src, dir, "test.yaml", func(name, _ string) { got[name] = true }); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"FROM_FILE": true, "FROM_LITERAL": true, "FROM_PATCH": true, "FROM_CONTAINER": true}
	if !maps.Equal(got, want) {
		t.Errorf("manifestEnv() found %v, want %v", got, want)
	}
}
