// Command kubeapi starts a throwaway Kubernetes control plane (embedded etcd
// and a kube-apiserver binary) on loopback, installs CRDs, and either
// serves until interrupted or server-side dry-runs manifests against it.
//
//	kubeapi -apiserver .bin/kubeapi-v1.37.2/kube-apiserver -crds DIR serve
//	kubeapi -apiserver ... -crds DIR dry-run build1.yaml build2.yaml ...
//
// serve prints the kubeconfig's path (kubectl --kubeconfig PATH ...).
// dry-run applies every object of each file with dryRun=All (as
// `kubectl apply --server-side --dry-run=server`), prints each file's
// accepted and rejected counts and every rejection, and exits 1 if any
// object was rejected.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"

	"blackfriday.local/tooling/kubeapi/cluster"
	"blackfriday.local/tooling/kubeapi/dryrun"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kubeapi:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("kubeapi", flag.ContinueOnError)
	apiserver := fs.String("apiserver", os.Getenv("BF_KUBE_APISERVER"), "the kube-apiserver binary (default $BF_KUBE_APISERVER)")
	dir := fs.String("dir", filepath.Join(os.TempDir(), "blackfriday-kubeapi"), "working directory: etcd data, certificates, kubeconfig (emptied first)")
	crds := fs.String("crds", "", "a directory whose *.yaml CustomResourceDefinitions are installed before anything else")
	namespace := fs.String("namespace", "default", "the namespace of namespaced objects that name none")
	verbose := fs.Bool("v", false, "show kube-apiserver's log")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: kubeapi [flags] serve | dry-run FILE...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *apiserver == "" || fs.NArg() == 0 || (fs.Arg(0) != "serve" && fs.Arg(0) != "dry-run") {
		fs.Usage()
		return errors.New("need -apiserver and a command")
	}
	var files []string
	if fs.Arg(0) == "dry-run" {
		files = fs.Args()[1:]
		if len(files) == 0 {
			return errors.New("dry-run: no files")
		}
	}
	start := time.Now()
	opts := cluster.Options{APIServer: *apiserver, Dir: *dir}
	if *verbose {
		opts.Log = stderr
	}
	c, err := cluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Fprintf(stderr, "kubeapi: %s ready in %s\n", c.Server, time.Since(start).Round(time.Millisecond))
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return err
	}
	client, err := dryrun.New(cfg)
	if err != nil {
		return err
	}
	if *crds != "" {
		t := time.Now()
		paths, _ := filepath.Glob(filepath.Join(*crds, "*.yaml"))
		objs, err := dryrun.ReadFiles(paths...)
		if err != nil {
			return err
		}
		if err := client.InstallCRDs(ctx, objs, time.Minute); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "kubeapi: %d CRDs Established in %s\n", len(objs), time.Since(t).Round(time.Millisecond))
	}
	if fs.Arg(0) == "serve" {
		fmt.Fprintf(stdout, "KUBECONFIG=%s\n", c.Kubeconfig)
		<-ctx.Done()
		return nil
	}
	return dryRunFiles(ctx, client, files, *namespace, stdout)
}

func dryRunFiles(ctx context.Context, client *dryrun.Client, files []string, namespace string, stdout io.Writer) error {
	perFile := map[string][]*unstructured.Unstructured{}
	for _, f := range files {
		objs, err := dryrun.ReadFiles(f)
		if err != nil {
			return err
		}
		perFile[f] = objs
	}
	failed := 0
	for _, f := range files {
		t := time.Now()
		if err := client.ApplyNamespaces(ctx, perFile[f]); err != nil {
			return err
		}
		accepted, rejected, warnings := dryrun.Summary(client.DryRun(ctx, perFile[f], namespace))
		fmt.Fprintf(stdout, "dry-run %s: %d accepted, %d rejected, %d warnings (%s)\n", f, accepted, len(rejected), len(warnings), time.Since(t).Round(time.Millisecond))
		for _, w := range warnings {
			fmt.Fprintln(stdout, "  warning:", w)
		}
		for _, r := range rejected {
			fmt.Fprintln(stdout, "  rejected:", r)
		}
		failed += len(rejected)
	}
	if failed > 0 {
		return fmt.Errorf("%d objects rejected", failed)
	}
	return nil
}
