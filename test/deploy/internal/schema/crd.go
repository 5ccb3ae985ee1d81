package schema

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	yamlv3 "go.yaml.in/yaml/v3"
)

// CRDSchema is one served version of a CustomResourceDefinition, as a
// strict standalone schema.
type CRDSchema struct {
	GVK    GVK
	Schema map[string]any
}

// LoadCRDs reads every CustomResourceDefinition in the YAML files (other
// documents are skipped) and returns the strict schema of each served
// version. metadata, which CRDs leave open, gets the strict ObjectMeta of
// the Kubernetes document k8s.
func LoadCRDs(k8s *Swagger, paths ...string) ([]CRDSchema, error) {
	meta := make(map[string]any)
	if err := k8s.collect(objectMeta, meta); err != nil {
		return nil, err
	}
	var out []CRDSchema
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		docs, err := splitYAML(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		for _, doc := range docs {
			var crd struct {
				Kind string `json:"kind"`
				Spec struct {
					Group string `json:"group"`
					Names struct {
						Kind string `json:"kind"`
					} `json:"names"`
					Versions []struct {
						Name   string `json:"name"`
						Served bool   `json:"served"`
						Schema struct {
							OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
						} `json:"schema"`
					} `json:"versions"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &crd); err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if !v.Served || v.Schema.OpenAPIV3Schema == nil {
					continue
				}
				g := GVK{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}
				out = append(out, CRDSchema{GVK: g, Schema: crdSchema(g, v.Schema.OpenAPIV3Schema, meta)})
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no CustomResourceDefinition found")
	}
	return out, nil
}

func crdSchema(g GVK, s map[string]any, meta map[string]any) map[string]any {
	root, _ := walk(deepCopy(s)).(map[string]any)
	pinKind(root, g)
	props := root["properties"].(map[string]any)
	props["metadata"] = map[string]any{"$ref": defsPrefix + objectMeta}
	out := map[string]any{"$schema": draft07}
	for k, v := range root {
		out[k] = v
	}
	out["definitions"] = deepCopy(meta)
	return out
}

// splitYAML cuts a multi-document YAML stream into its documents.
func splitYAML(b []byte) ([][]byte, error) {
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	var docs [][]byte
	for {
		var n yamlv3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		out, err := yamlv3.Marshal(&n)
		if err != nil {
			return nil, err
		}
		docs = append(docs, out)
	}
}
