package schema

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// WriteKubernetes writes the strict schema of every kind of k8s under dir,
// for Kubernetes version (such as "1.37.2"), and returns how many.
func WriteKubernetes(k8s *Swagger, dir, version string) (int, error) {
	n := 0
	for g, name := range k8s.Kinds() {
		s, err := k8s.KindSchema(g, name)
		if err != nil {
			return n, err
		}
		if err := writeJSON(KubernetesFileName(dir, version, g), s); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// WriteCRDs writes the schemas under dir and returns how many.
func WriteCRDs(crds []CRDSchema, dir string) (int, error) {
	for _, c := range crds {
		if err := writeJSON(CRDFileName(dir, c.GVK), c.Schema); err != nil {
			return 0, err
		}
	}
	return len(crds), nil
}

func writeJSON(path string, v any) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
