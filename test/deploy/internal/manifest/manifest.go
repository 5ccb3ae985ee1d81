// Package manifest builds the repository's kustomizations in memory and
// gives the resulting objects to the checks.
//
// The kustomize/ tree is copied into an in-memory file system, so a test
// can seed a mistake into any file and build again without touching the
// work tree. The build is kustomize's own (sigs.k8s.io/kustomize/api, the
// version of the pinned kustomize CLI).
package manifest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Root is where the kustomize/ tree lives in the in-memory file system.
const Root = "/kustomize"

// Object is one Kubernetes object, as decoded from YAML.
type Object map[string]any

// Kind is the object's kind.
func (o Object) Kind() string { return String(o, "kind") }

// Name is the object's metadata.name.
func (o Object) Name() string { return String(o, "metadata", "name") }

// Namespace is the object's metadata.namespace.
func (o Object) Namespace() string { return String(o, "metadata", "namespace") }

// APIVersion is the object's apiVersion.
func (o Object) APIVersion() string { return String(o, "apiVersion") }

// ID names the object for messages, such as "Deployment/api".
func (o Object) ID() string { return o.Kind() + "/" + o.Name() }

// Get walks maps by key and returns what is at the end, or nil.
func Get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			if o, isObj := v.(Object); isObj {
				m = o
			} else {
				return nil
			}
		}
		v = m[k]
	}
	return v
}

// Map is Get for a map.
func Map(v any, keys ...string) map[string]any {
	m, _ := Get(v, keys...).(map[string]any)
	return m
}

// List is Get for a list.
func List(v any, keys ...string) []any {
	l, _ := Get(v, keys...).([]any)
	return l
}

// String is Get for a string.
func String(v any, keys ...string) string {
	s, _ := Get(v, keys...).(string)
	return s
}

// Int is Get for a number; ok is false when there is none.
func Int(v any, keys ...string) (n int64, ok bool) {
	switch x := Get(v, keys...).(type) {
	case float64:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	}
	return 0, false
}

// Tree is an in-memory copy of the repository's kustomize/ directory.
type Tree struct {
	fs filesys.FileSystem
}

// Load copies the directory dir (the repository's kustomize/) into memory.
func Load(dir string) (*Tree, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join(Root, filepath.ToSlash(rel)), b)
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", dir, err)
	}
	return &Tree{fs: mem}, nil
}

// Read returns a file of the tree, by its path under kustomize/.
func (t *Tree) Read(rel string) ([]byte, error) {
	return t.fs.ReadFile(path.Join(Root, rel))
}

// Write replaces (or adds) a file of the tree, by its path under kustomize/.
func (t *Tree) Write(rel string, b []byte) error {
	return t.fs.WriteFile(path.Join(Root, rel), b)
}

// Replace edits a file of the tree: old must occur in it.
func (t *Tree) Replace(rel, old, new string) error {
	b, err := t.Read(rel)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(old)) {
		return fmt.Errorf("%s does not contain %q", rel, old)
	}
	return t.Write(rel, bytes.Replace(b, []byte(old), []byte(new), 1))
}

// Variant is something to build: a kustomization of the tree (such as
// "overlays/prod"), optionally with components added on top and image
// tags set, the way an operator composes them.
type Variant struct {
	Name       string
	Dir        string
	Components []string
	Images     map[string]string
}

// Build runs kustomize on the variant and decodes the objects.
func (t *Tree) Build(v Variant) ([]Object, error) {
	dir := path.Join(Root, v.Dir)
	if len(v.Components) > 0 || len(v.Images) > 0 {
		dir = path.Join("/wrap", v.Name)
		var b strings.Builder
		b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n")
		fmt.Fprintf(&b, "resources:\n  - ../..%s\n", path.Join(Root, v.Dir))
		if len(v.Components) > 0 {
			b.WriteString("components:\n")
			for _, c := range v.Components {
				fmt.Fprintf(&b, "  - ../..%s\n", path.Join(Root, c))
			}
		}
		if len(v.Images) > 0 {
			b.WriteString("images:\n")
			for name, tag := range v.Images {
				fmt.Fprintf(&b, "  - name: %s\n    newTag: %q\n", name, tag)
			}
		}
		if err := t.fs.WriteFile(path.Join(dir, "kustomization.yaml"), []byte(b.String())); err != nil {
			return nil, err
		}
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(t.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", v.Name, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		return nil, err
	}
	return Decode(out)
}

// Decode splits a YAML stream into objects.
func Decode(b []byte) ([]Object, error) {
	var objs []Object
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var o Object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, err
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs, nil
}

// Encode writes objects as one YAML stream.
func Encode(objs []Object) ([]byte, error) {
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
