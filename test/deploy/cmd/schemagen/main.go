// Command schemagen writes the strict JSON schemas that kubeconform
// validates the kustomize builds against: every Kubernetes kind from the
// OpenAPI document of the k8s.io/kubernetes module, and every kind of the
// given CustomResourceDefinition files (Strimzi, Gateway API, KEDA,
// Prometheus Operator). deploy.mk runs it; see docs/deploy.md.
//
//	schemagen -swagger swagger.json -kubernetes-version 1.37.2 -out DIR crd.yaml...
//
// It writes DIR/kubernetes/... and DIR/crds/..., laid out for the
// -schema-location templates it prints.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"blackfriday.local/test/deploy/internal/schema"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run() error {
	swagger := flag.String("swagger", "", "Kubernetes api/openapi-spec/swagger.json")
	version := flag.String("kubernetes-version", "", "Kubernetes version of the document, such as 1.37.2")
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *swagger == "" || *version == "" || *out == "" {
		flag.Usage()
		return fmt.Errorf("-swagger, -kubernetes-version and -out are required")
	}
	k8s, err := schema.LoadSwagger(*swagger)
	if err != nil {
		return err
	}
	kdir := filepath.Join(*out, "kubernetes")
	n, err := schema.WriteKubernetes(k8s, kdir, *version)
	if err != nil {
		return err
	}
	fmt.Printf("schemagen: %d Kubernetes kinds -> %s\n", n, kdir)
	if flag.NArg() > 0 {
		crds, err := schema.LoadCRDs(k8s, flag.Args()...)
		if err != nil {
			return err
		}
		cdir := filepath.Join(*out, "crds")
		m, err := schema.WriteCRDs(crds, cdir)
		if err != nil {
			return err
		}
		fmt.Printf("schemagen: %d custom kinds from %d CRD files -> %s\n", m, flag.NArg(), cdir)
	}
	return nil
}
