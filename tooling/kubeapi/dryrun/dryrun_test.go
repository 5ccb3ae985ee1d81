package dryrun_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"

	"blackfriday.local/tooling/kubeapi/cluster"
	"blackfriday.local/tooling/kubeapi/dryrun"
)

// The tests need a kube-apiserver binary (BF_KUBE_APISERVER), the CRDs to
// install (BF_DEPLOY_CRDS, a directory of *.yaml) and the kustomize builds
// (BF_DEPLOY_OUT, one <name>.yaml per overlay or combination): make
// deploy-dry-run gives all three. Without them they skip, or fail under
// CI=true.

type env struct {
	client *dryrun.Client
	builds map[string][]*unstructured.Unstructured
	names  []string
}

var (
	setupOnce sync.Once
	shared    *env
	setupErr  error
	stopAll   func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stopAll != nil {
		stopAll()
	}
	os.Exit(code)
}

func setup(t *testing.T) *env {
	t.Helper()
	apiserver, crds, out := os.Getenv("BF_KUBE_APISERVER"), os.Getenv("BF_DEPLOY_CRDS"), os.Getenv("BF_DEPLOY_OUT")
	if apiserver == "" || crds == "" || out == "" {
		msg := "BF_KUBE_APISERVER, BF_DEPLOY_CRDS and BF_DEPLOY_OUT are not all set (make deploy-dry-run sets them)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	setupOnce.Do(func() { shared, setupErr = start(apiserver, crds, out) })
	if setupErr != nil {
		t.Fatal(setupErr)
	}
	return shared
}

func start(apiserver, crdDir, out string) (*env, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "kubeapi-test-")
	if err != nil {
		return nil, err
	}
	var log strings.Builder
	t0 := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{APIServer: apiserver, Dir: dir, Log: &lockedWriter{w: &log}})
	if err != nil {
		os.RemoveAll(dir)
		return nil, &startError{err: err, log: log.String()}
	}
	stopAll = func() { c.Stop(); os.RemoveAll(dir) }
	fmt.Fprintf(os.Stderr, "kubeapi: apiserver ready in %s\n", time.Since(t0).Round(time.Millisecond))
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := dryrun.New(cfg)
	if err != nil {
		return nil, err
	}
	paths, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	crds, err := dryrun.ReadFiles(paths...)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := client.InstallCRDs(ctx, crds, 2*time.Minute); err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "kubeapi: %d CRDs Established in %s\n", len(crds), time.Since(t1).Round(time.Millisecond))
	e := &env{client: client, builds: map[string][]*unstructured.Unstructured{}}
	files, _ := filepath.Glob(filepath.Join(out, "*.yaml"))
	for _, f := range files {
		objs, err := dryrun.ReadFiles(f)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		e.builds[name] = objs
		e.names = append(e.names, name)
	}
	if len(e.names) == 0 {
		return nil, &startError{err: os.ErrNotExist, log: "no builds in " + out}
	}
	return e, nil
}

// TestServerDryRun sends every object of every overlay and combination to
// the real apiserver, with the CRDs installed: one rejected object fails,
// and so does one warning (a deprecated API or field, a pod template that
// the namespace's Pod Security level "warn" refuses).
func TestServerDryRun(t *testing.T) {
	e := setup(t)
	for _, name := range e.names {
		t.Run(name, func(t *testing.T) {
			t0 := time.Now()
			if err := e.client.ApplyNamespaces(t.Context(), e.builds[name]); err != nil {
				t.Fatal(err)
			}
			accepted, rejected, warnings := dryrun.Summary(e.client.DryRun(t.Context(), e.builds[name], "default"))
			t.Logf("%s: %d accepted, %d rejected, %d warnings (%s)", name, accepted, len(rejected), len(warnings), time.Since(t0).Round(time.Millisecond))
			for _, w := range warnings {
				t.Errorf("warning: %s", w)
			}
			for _, r := range rejected {
				t.Errorf("rejected: %s", r)
			}
		})
	}
}

// TestSeededMistakes checks that the run catches what only a real
// apiserver can: each object is a copy of one from a build with one mistake
// kubeconform's JSON schemas do not see (a CRD's CEL rule, the apiserver's
// own validation). The unchanged copy must pass, the seeded one must be
// rejected with the rule's message.
func TestSeededMistakes(t *testing.T) {
	e := setup(t)
	cases := []struct {
		name, build, kind string
		seed              func(t *testing.T, o *unstructured.Unstructured)
		want              string
		// warning: the object is admitted, with want among its warnings.
		warning bool
		// kubeconformToo: kubeconform -strict rejects it as well; every
		// other seeded mistake passes kubeconform, which the test checks
		// when it has kubeconform and the schemas.
		kubeconformToo bool
	}{
		{
			// Gateway API's HTTPRoute: a filter whose type names a
			// field that is missing is valid JSON schema, and rejected by
			// a CEL x-kubernetes-validations rule.
			name:  "httproute filter without its field (Gateway API CEL)",
			build: "dev",
			kind:  "HTTPRoute",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				rules, _, _ := unstructured.NestedSlice(o.Object, "spec", "rules")
				if len(rules) == 0 {
					t.Fatal("HTTPRoute without rules")
				}
				rule := rules[0].(map[string]any)
				rule["filters"] = []any{map[string]any{"type": "RequestHeaderModifier"}}
				if err := unstructured.SetNestedSlice(o.Object, rules, "spec", "rules"); err != nil {
					t.Fatal(err)
				}
			},
			want: "filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type",
		},
		{
			// The apiserver's own validation of a Deployment: a selector
			// that does not select the pod template's labels.
			name:  "deployment selector not matching its template",
			build: "dev",
			kind:  "Deployment",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				if err := unstructured.SetNestedStringMap(o.Object, map[string]string{"app.kubernetes.io/name": "not-this-one"}, "spec", "selector", "matchLabels"); err != nil {
					t.Fatal(err)
				}
			},
			want: "`selector` does not match template `labels`",
		},
		{
			// Pod Security admission: the namespace's warn=restricted
			// label makes the apiserver warn about a pod template that
			// allows privilege escalation (the run fails on warnings).
			name:  "deployment allowing privilege escalation (Pod Security warn)",
			build: "prod",
			kind:  "Deployment",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
				if len(containers) == 0 {
					t.Fatal("Deployment without containers")
				}
				c := containers[0].(map[string]any)
				sc, _ := c["securityContext"].(map[string]any)
				if sc == nil {
					sc = map[string]any{}
				}
				sc["allowPrivilegeEscalation"] = true
				c["securityContext"] = sc
				if err := unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers"); err != nil {
					t.Fatal(err)
				}
			},
			want:    `would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false`,
			warning: true,
		},
		{
			// A misspelt field: server-side apply refuses a field the
			// schema does not declare, as kubeconform -strict does.
			name:  "kafkatopic misspelt field (strict field validation)",
			build: "dev",
			kind:  "KafkaTopic",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				if err := unstructured.SetNestedField(o.Object, int64(3), "spec", "replica"); err != nil {
					t.Fatal(err)
				}
			},
			want:           ".spec.replica: field not declared in schema",
			kubeconformToo: true,
		},
		{
			// Strimzi's KafkaUser: certificate validity on a SCRAM user,
			// which a CEL rule of Strimzi's CRD forbids.
			name:  "kafkauser validityDays on scram-sha-512 (Strimzi CEL)",
			build: "prod",
			kind:  "KafkaUser",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				if err := unstructured.SetNestedField(o.Object, int64(30), "spec", "authentication", "validityDays"); err != nil {
					t.Fatal(err)
				}
			},
			want: "'validityDays' and 'renewalDays' can be configured only with 'type: tls'",
		},
		{
			// KEDA's ScaledObject: more replicas at least than at most.
			name:  "scaledobject min above max (KEDA CEL)",
			build: "dev-all",
			kind:  "ScaledObject",
			seed: func(t *testing.T, o *unstructured.Unstructured) {
				if err := unstructured.SetNestedField(o.Object, int64(50), "spec", "minReplicaCount"); err != nil {
					t.Fatal(err)
				}
				if err := unstructured.SetNestedField(o.Object, int64(2), "spec", "maxReplicaCount"); err != nil {
					t.Fatal(err)
				}
			},
			want: "minReplicaCount must be less than or equal to maxReplicaCount",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			orig := first(e.builds[tc.build], tc.kind)
			if orig == nil {
				t.Fatalf("no %s in the %s build", tc.kind, tc.build)
			}
			if err := e.client.ApplyNamespaces(t.Context(), e.builds[tc.build]); err != nil {
				t.Fatal(err)
			}
			seeded := orig.DeepCopy()
			tc.seed(t, seeded)
			if out, ok, checked := kubeconform(t, seeded); checked && ok == tc.kubeconformToo {
				t.Errorf("kubeconform -strict: want accepted=%v, got accepted=%v: %s", !tc.kubeconformToo, ok, out)
			}
			res := e.client.DryRun(t.Context(), []*unstructured.Unstructured{orig, seeded}, "default")
			if res[0].Err != nil || len(res[0].Warnings) > 0 {
				t.Fatalf("the unchanged %s was rejected or warned about: %v %q", res[0].Name(), res[0].Err, res[0].Warnings)
			}
			if tc.warning {
				if res[1].Err != nil {
					t.Fatalf("the seeded %s was rejected: %v", res[1].Name(), res[1].Err)
				}
				if !strings.Contains(strings.Join(res[1].Warnings, "\n"), tc.want) {
					t.Fatalf("the seeded %s drew no warning %q: %q", res[1].Name(), tc.want, res[1].Warnings)
				}
				t.Logf("warned about as it should be: %q", res[1].Warnings)
				return
			}
			if res[1].Err == nil {
				t.Fatalf("the seeded %s was accepted", res[1].Name())
			}
			if !strings.Contains(res[1].Err.Error(), tc.want) {
				t.Fatalf("the seeded %s was rejected, but not by the rule %q: %v", res[1].Name(), tc.want, res[1].Err)
			}
			t.Logf("rejected as it should be: %v", res[1].Err)
		})
	}
}

// kubeconform validates the object with kubeconform -strict against the
// schemas make deploy-schemas generates (BF_KUBECONFORM, BF_DEPLOY_SCHEMAS,
// BF_DEPLOY_K8S_VERSION, as make deploy-dry-run sets them) and says whether
// it passed; without them it checks nothing.
func kubeconform(t *testing.T, o *unstructured.Unstructured) (out string, passed, checked bool) {
	t.Helper()
	bin, schemas, version := os.Getenv("BF_KUBECONFORM"), os.Getenv("BF_DEPLOY_SCHEMAS"), os.Getenv("BF_DEPLOY_K8S_VERSION")
	if bin == "" || schemas == "" || version == "" {
		t.Log("kubeconform not checked: BF_KUBECONFORM, BF_DEPLOY_SCHEMAS or BF_DEPLOY_K8S_VERSION unset")
		return "", false, false
	}
	data, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "seeded.json")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The flags of deploy.mk's KUBECONFORM_FLAGS.
	b, err := exec.Command(bin, "-strict", "-kubernetes-version", version,
		"-schema-location", filepath.Join(schemas, "kubernetes"),
		"-schema-location", filepath.Join(schemas, "crds")+"/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
		f).CombinedOutput()
	return string(b), err == nil, true
}

func first(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}

type startError struct {
	err error
	log string
}

func (e *startError) Error() string {
	log := e.log
	if len(log) > 4000 {
		log = "…" + log[len(log)-4000:]
	}
	return e.err.Error() + "\n" + log
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
