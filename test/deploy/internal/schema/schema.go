// Package schema turns the Kubernetes OpenAPI document and
// CustomResourceDefinitions into strict, standalone JSON schemas laid out
// the way kubeconform's -schema-location templates look them up.
//
// Strict means every object that lists its properties rejects any other
// (additionalProperties: false), unless the API marks it open with
// x-kubernetes-preserve-unknown-fields: a typo'd field is an error, not a
// silently dropped value. Standalone means each file carries the
// definitions it references, so kubeconform needs nothing else.
package schema

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// KubernetesTemplate is the -schema-location template, relative to the
// directory Kubernetes writes into, that finds its files. It is
// kubeconform's default layout.
const KubernetesTemplate = "{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"

// CRDTemplate is the -schema-location template, relative to the directory
// CRDs writes into, that finds its files.
const CRDTemplate = "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"

const (
	draft07     = "http://json-schema.org/draft-07/schema#"
	defsPrefix  = "#/definitions/"
	objectMeta  = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
)

// GVK is a group, version and kind.
type GVK struct {
	Group, Version, Kind string
}

// APIVersion is the apiVersion field of the kind's objects.
func (g GVK) APIVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

// KubernetesFileName is where kubeconform looks for the kind's strict
// schema under dir for Kubernetes version (such as "1.37.2"), following
// KubernetesTemplate.
func KubernetesFileName(dir, version string, g GVK) string {
	apiVersion := g.APIVersion()
	groupParts := strings.Split(apiVersion, "/")
	suffix := "-" + strings.ToLower(strings.Split(groupParts[0], ".")[0])
	if len(groupParts) > 1 {
		suffix += "-" + strings.ToLower(groupParts[1])
	}
	return filepath.Join(dir, "v"+version+"-standalone-strict", strings.ToLower(g.Kind)+suffix+".json")
}

// CRDFileName is where kubeconform looks for a custom kind's strict schema
// under dir, following CRDTemplate.
func CRDFileName(dir string, g GVK) string {
	return filepath.Join(dir, g.Group, strings.ToLower(g.Kind)+"_"+g.Version+".json")
}

// Swagger is the part of a Kubernetes OpenAPI v2 document this package uses.
type Swagger struct {
	Definitions map[string]map[string]any `json:"definitions"`
}

// LoadSwagger reads a Kubernetes swagger.json.
func LoadSwagger(path string) (*Swagger, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Swagger
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if len(s.Definitions) == 0 {
		return nil, fmt.Errorf("%s has no definitions", path)
	}
	return &s, nil
}

// Kinds lists every kind the document defines, with the definition that
// describes it. Definitions shared by many kinds (DeleteOptions,
// WatchEvent, ...) are left out: nobody writes them in a manifest.
func (s *Swagger) Kinds() map[GVK]string {
	out := make(map[GVK]string)
	for name, def := range s.Definitions {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		if len(gvks) != 1 {
			continue
		}
		m, _ := gvks[0].(map[string]any)
		g := GVK{Group: str(m["group"]), Version: str(m["version"]), Kind: str(m["kind"])}
		if g.Kind == "" || g.Version == "" || strings.HasSuffix(g.Kind, "List") {
			continue
		}
		out[g] = name
	}
	return out
}

// KindSchema returns the strict standalone schema of the kind defined by
// definition name.
func (s *Swagger) KindSchema(g GVK, name string) (map[string]any, error) {
	defs := make(map[string]any)
	if err := s.collect(name, defs); err != nil {
		return nil, err
	}
	root, _ := deepCopy(defs[name]).(map[string]any)
	pinKind(root, g)
	out := map[string]any{"$schema": draft07}
	maps.Copy(out, root)
	delete(defs, name)
	// The root may refer to itself (JSONSchemaProps does): keep a copy.
	if refersTo(defs, name) || refersTo(root, name) {
		defs[name] = strictK8s(name, deepCopy(s.Definitions[name]))
	}
	if len(defs) > 0 {
		out["definitions"] = defs
	}
	return out, nil
}

// collect adds definition name and everything it references to defs,
// strict.
func (s *Swagger) collect(name string, defs map[string]any) error {
	if _, ok := defs[name]; ok {
		return nil
	}
	def, ok := s.Definitions[name]
	if !ok {
		return fmt.Errorf("definition %s is referenced but missing", name)
	}
	d := strictK8s(name, deepCopy(def))
	defs[name] = d
	for _, ref := range refs(d) {
		if err := s.collect(ref, defs); err != nil {
			return err
		}
	}
	return nil
}

// strictK8s makes one Kubernetes definition strict and fixes the two
// types the OpenAPI document describes as plain strings although
// manifests write numbers for them.
func strictK8s(name string, v any) map[string]any {
	switch name {
	case quantity:
		return map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	case intOrString:
		return map[string]any{"anyOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	}
	m, _ := walk(v).(map[string]any)
	return m
}

// walk applies the strict rules to every schema node of v.
func walk(v any) any {
	switch n := v.(type) {
	case map[string]any:
		for k, c := range n {
			switch k {
			case "enum", "default", "example", "x-kubernetes-group-version-kind":
				// Values, not schemas.
				continue
			case "properties", "patternProperties", "definitions":
				// Names, each of a schema: a property may be called
				// default or enum, as HealthCheckPolicy's spec.default is.
				if named, ok := c.(map[string]any); ok {
					for name, s := range named {
						named[name] = walk(s)
					}
					continue
				}
			}
			n[k] = walk(c)
		}
		if isTrue(n["x-kubernetes-int-or-string"]) {
			delete(n, "type")
			n["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		}
		if f, _ := n["format"].(string); f == "int-or-string" {
			delete(n, "type")
			delete(n, "format")
			n["anyOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		}
		if _, hasProps := n["properties"].(map[string]any); hasProps {
			_, hasAP := n["additionalProperties"]
			if !hasAP && !isTrue(n["x-kubernetes-preserve-unknown-fields"]) {
				n["additionalProperties"] = false
			}
		}
		if isTrue(n["nullable"]) {
			if t, ok := n["type"].(string); ok {
				n["type"] = []any{t, "null"}
			}
		}
		return n
	case []any:
		for i, c := range n {
			n[i] = walk(c)
		}
		return n
	default:
		return v
	}
}

// pinKind requires the kind's own apiVersion and kind at the root.
func pinKind(root map[string]any, g GVK) {
	props, _ := root["properties"].(map[string]any)
	if props == nil {
		props = make(map[string]any)
		root["properties"] = props
	}
	props["apiVersion"] = map[string]any{"type": "string", "enum": []any{g.APIVersion()}}
	props["kind"] = map[string]any{"type": "string", "enum": []any{g.Kind}}
	req := []any{"apiVersion", "kind"}
	if old, ok := root["required"].([]any); ok {
		for _, r := range old {
			if r != "apiVersion" && r != "kind" {
				req = append(req, r)
			}
		}
	}
	root["required"] = req
}

// refs lists the definition names v references, in a stable order.
func refs(v any) []string {
	seen := make(map[string]bool)
	var visit func(any)
	visit = func(v any) {
		switch n := v.(type) {
		case map[string]any:
			if r, ok := n["$ref"].(string); ok && strings.HasPrefix(r, defsPrefix) {
				seen[strings.TrimPrefix(r, defsPrefix)] = true
			}
			for _, c := range n {
				visit(c)
			}
		case []any:
			for _, c := range n {
				visit(c)
			}
		}
	}
	visit(v)
	return slices.Sorted(maps.Keys(seen))
}

func refersTo(v any, name string) bool {
	return slices.Contains(refs(v), name)
}

func deepCopy(v any) any {
	switch n := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(n))
		for k, c := range n {
			m[k] = deepCopy(c)
		}
		return m
	case []any:
		s := make([]any, len(n))
		for i, c := range n {
			s[i] = deepCopy(c)
		}
		return s
	default:
		return v
	}
}

func isTrue(v any) bool {
	b, _ := v.(bool)
	return b
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
