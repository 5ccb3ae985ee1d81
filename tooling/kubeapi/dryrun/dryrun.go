// Package dryrun sends manifests to a real kube-apiserver as
// `kubectl apply --server-side --dry-run=server` would: every object is
// server-side applied with dryRun=All, so the apiserver runs its whole
// admission and validation chain (OpenAPI schemas, CRD structural schemas
// and their CEL x-kubernetes-validations rules, built-in validation) and
// stores nothing.
package dryrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager names this client in managedFields.
const FieldManager = "blackfriday-dry-run"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// ReadFiles decodes every object of the YAML (multi-document) or JSON
// files, skipping empty documents; Lists are not expanded.
func ReadFiles(paths ...string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		o, err := Decode(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

// Decode decodes the objects of a YAML stream.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Client talks to one apiserver.
type Client struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// New makes a Client for cfg.
func New(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 500, 1000
	cfg.WarningHandlerWithContext = warningCollector{}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}, nil
}

// InstallCRDs creates the CustomResourceDefinitions (for real, not a
// dry-run; an existing one is left as it is) and waits until every one is
// Established.
func (c *Client) InstallCRDs(ctx context.Context, crds []*unstructured.Unstructured, timeout time.Duration) error {
	for _, crd := range crds {
		if crd.GetKind() != "CustomResourceDefinition" {
			return fmt.Errorf("%s %s is not a CustomResourceDefinition", crd.GetKind(), crd.GetName())
		}
		crd = crd.DeepCopy()
		dropClosedObjects(crd.Object)
		_, err := c.dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		name := crd.GetName()
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			got, err := c.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, cond := range conds {
				m, _ := cond.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established: %w", name, err)
		}
	}
	c.mapper.Reset()
	return nil
}

// dropClosedObjects removes every `additionalProperties: false`. A
// structural schema (which apiextensions.k8s.io/v1 requires) may not say
// it; our own stand-in CRDs (test/deploy/crds) do, for kubeconform. The
// apiserver prunes and, under strict field validation, rejects unknown
// fields of a structural schema anyway, so nothing is lost; upstream CRDs
// never say it and are unchanged.
func dropClosedObjects(v any) {
	switch v := v.(type) {
	case map[string]any:
		if b, ok := v["additionalProperties"].(bool); ok && !b {
			delete(v, "additionalProperties")
		}
		for _, x := range v {
			dropClosedObjects(x)
		}
	case []any:
		for _, x := range v {
			dropClosedObjects(x)
		}
	}
}

// ApplyNamespaces makes the namespaces the objects need exist for real,
// so that the namespaced objects' dry-runs can be admitted: each Namespace
// among the objects is server-side applied as it is (its Pod Security
// labels then govern the admission of the others, as in a cluster), and
// every other namespace an object names is created bare if missing.
func (c *Client) ApplyNamespaces(ctx context.Context, objs []*unstructured.Unstructured) error {
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	declared := map[string]bool{}
	for _, o := range objs {
		if o.GetAPIVersion() != "v1" || o.GetKind() != "Namespace" {
			continue
		}
		declared[o.GetName()] = true
		data, err := json.Marshal(o.Object)
		if err != nil {
			return err
		}
		force := true
		if _, err := c.dyn.Resource(nsGVR).Patch(ctx, o.GetName(), types.ApplyPatchType, data,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return fmt.Errorf("apply namespace %s: %w", o.GetName(), err)
		}
	}
	for _, o := range objs {
		name := o.GetNamespace()
		if name == "" || declared[name] {
			continue
		}
		declared[name] = true
		ns := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name},
		}}
		if _, err := c.dyn.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// Result is the apiserver's answer for one object.
type Result struct {
	Object *unstructured.Unstructured
	// Err is nil when the apiserver accepted the object.
	Err error
	// Warnings are the apiserver's warnings about the object (deprecated
	// APIs or fields, ignored values, ...), accepted or not.
	Warnings []string
}

type warningsKey struct{}

// warningCollector hands each warning to the request's own list, so that
// concurrent requests keep theirs apart.
type warningCollector struct{}

func (warningCollector) HandleWarningHeaderWithContext(ctx context.Context, _ int, _ string, text string) {
	if w, ok := ctx.Value(warningsKey{}).(*[]string); ok {
		*w = append(*w, text)
	}
}

// Name is the object's kind, namespace and name.
func (r Result) Name() string {
	return ObjectName(r.Object)
}

// ObjectName is an object's kind, namespace and name, as
// Kind/namespace/name (Kind/name when cluster-scoped).
func ObjectName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return o.GetKind() + "/" + ns + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetName()
}

// DryRun server-side applies every object with dryRun=All and returns one
// Result per object, in order. A namespaced object without a namespace
// goes to defaultNamespace. Objects are sent by a few workers at once.
func (c *Client) DryRun(ctx context.Context, objs []*unstructured.Unstructured, defaultNamespace string) []Result {
	results := make([]Result, len(objs))
	idx := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range idx {
				var warnings []string
				err := c.apply(context.WithValue(ctx, warningsKey{}, &warnings), objs[i], defaultNamespace)
				results[i] = Result{Object: objs[i], Err: err, Warnings: warnings}
			}
		})
	}
	for i := range objs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return results
}

func (c *Client) apply(ctx context.Context, o *unstructured.Unstructured, defaultNamespace string) error {
	gvk := o.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		// A CRD installed after the cache was filled: look again once.
		c.mapper.Reset()
		if m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return fmt.Errorf("no resource for %s: %w", gvk, err)
		}
	}
	data, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	var r dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = defaultNamespace
		}
		r = c.dyn.Resource(m.Resource).Namespace(ns)
	}
	force := true
	_, err = r.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: FieldManager, Force: &force,
		// As kubectl's default (--validate=strict): an unknown or
		// duplicated field is an error, not a warning.
		FieldValidation: "Strict",
	})
	return err
}

// Summary counts accepted and rejected results, and lists the rejections
// and the warnings, sorted by object name.
func Summary(results []Result) (accepted int, rejected, warnings []string) {
	for _, r := range results {
		for _, w := range r.Warnings {
			warnings = append(warnings, r.Name()+": "+w)
		}
		if r.Err == nil {
			accepted++
			continue
		}
		rejected = append(rejected, r.Name()+": "+r.Err.Error())
	}
	sort.Strings(rejected)
	sort.Strings(warnings)
	return accepted, rejected, warnings
}
