package schema_test

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/yannh/kubeconform/pkg/validator"

	"blackfriday.local/test/deploy/internal/schema"
)

// swagger is a tiny Kubernetes OpenAPI document: a kind with an int-or-
// string, a quantity, an open map and a self reference.
const swagger = `{"definitions": {
 "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {"type": "object", "properties": {
   "name": {"type": "string"}, "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
 "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
 "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
 "io.example.v1.Node": {"type": "object", "properties": {
   "value": {"type": "string"}, "child": {"$ref": "#/definitions/io.example.v1.Node"}}},
 "io.example.v1.Widget": {"type": "object", "required": ["spec"],
  "x-kubernetes-group-version-kind": [{"group": "example.io", "version": "v1", "kind": "Widget"}],
  "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
   "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
   "spec": {"type": "object", "properties": {
     "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
     "memory": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
     "tree": {"$ref": "#/definitions/io.example.v1.Node"},
     "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "string"}}}}}}}
}}`

// crd is a CustomResourceDefinition in the style of Strimzi's.
const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.io
spec:
  group: example.io
  names: {kind: Gadget, plural: gadgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              required: [partitions]
              properties:
                partitions: {type: integer}
                port: {x-kubernetes-int-or-string: true}
                note: {type: string, nullable: true}
                config: {type: object, x-kubernetes-preserve-unknown-fields: true}
                default:
                  type: object
                  properties:
                    interval: {type: integer}
`

// TestStrictSchemasRejectTypos generates schemas from a small document and
// CRD into kubeconform's layout and validates objects with kubeconform.
func TestStrictSchemasRejectTypos(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sw := filepath.Join(dir, "swagger.json")
	cr := filepath.Join(dir, "crd.yaml")
	if err := os.WriteFile(sw, []byte(swagger), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cr, []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	k8s, err := schema.LoadSwagger(sw)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := schema.WriteKubernetes(k8s, filepath.Join(dir, "k"), "1.99.0"); err != nil || n != 1 {
		t.Fatalf("WriteKubernetes() = %d, %v, want 1, nil", n, err)
	}
	crds, err := schema.LoadCRDs(k8s, cr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := schema.WriteCRDs(crds, filepath.Join(dir, "c")); err != nil {
		t.Fatal(err)
	}
	val, err := validator.New([]string{filepath.Join(dir, "k"), filepath.Join(dir, "c", schema.CRDTemplate)},
		validator.Opts{Strict: true, KubernetesVersion: "1.99.0"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		obj     string
		wantErr string
	}{
		{"valid widget", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w","labels":{"a":"b"}},"spec":{"port":8080,"memory":"1Gi","tree":{"child":{"value":"x"}},"extra":{"anything":1}}}`, ""},
		{"int-or-string as a string", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"port":"http","memory":1}}`, ""},
		{"typo in spec", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"prot":8080}}`, "prot"},
		{"typo in metadata", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w","lables":{}},"spec":{}}`, "lables"},
		{"typo deep in a recursive type", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"tree":{"child":{"valeu":"x"}}}}`, "valeu"},
		{"wrong type", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"port":true}}`, "port"},
		{"missing required", `{"apiVersion":"example.io/v1","kind":"Widget","metadata":{"name":"w"}}`, "spec"},
		{"valid gadget", `{"apiVersion":"example.io/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{"partitions":12,"port":"x","note":null,"config":{"retention.ms":1}}}`, ""},
		{"typo in a custom resource", `{"apiVersion":"example.io/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{"partitions":12,"partition":3}}`, "partition"},
		{"typo in a custom resource's metadata", `{"apiVersion":"example.io/v1","kind":"Gadget","metadata":{"nmae":"g"},"spec":{"partitions":1}}`, "nmae"},
		{"a property named default is a schema too", `{"apiVersion":"example.io/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{"partitions":1,"default":{"intervl":5}}}`, "intervl"},
		{"custom resource missing a required field", `{"apiVersion":"example.io/v1","kind":"Gadget","metadata":{"name":"g"},"spec":{}}`, "partitions"},
		{"unknown kind", `{"apiVersion":"example.io/v1","kind":"Gizmo","metadata":{"name":"g"}}`, "could not find schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var doc any
			if err := json.Unmarshal([]byte(tt.obj), &doc); err != nil {
				t.Fatal(err)
			}
			res := val.Validate("obj.json", io.NopCloser(bytes.NewReader([]byte(tt.obj))))
			if len(res) != 1 {
				t.Fatalf("Validate(%s) = %d results, want 1", tt.name, len(res))
			}
			var msg string
			if res[0].Err != nil {
				msg = res[0].Err.Error()
			}
			for _, e := range res[0].ValidationErrors {
				msg += " " + e.Path + ": " + e.Msg
			}
			valid := res[0].Status == validator.Valid
			if tt.wantErr == "" && !valid {
				t.Errorf("Validate(%s) = %v (%s), want valid", tt.name, res[0].Status, msg)
			}
			if tt.wantErr != "" && (valid || !strings.Contains(msg, tt.wantErr)) {
				t.Errorf("Validate(%s) = %v (%q), want invalid mentioning %q", tt.name, res[0].Status, msg, tt.wantErr)
			}
		})
	}
}
