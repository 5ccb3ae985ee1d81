package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	m "blackfriday.local/test/deploy/internal/manifest"
	"blackfriday.local/test/deploy/internal/policy"
)

// TestBuildsFollowPolicy builds every overlay, alone and with every optional
// component, and applies every policy rule to every object (prod's builds
// the production rules too).
func TestBuildsFollowPolicy(t *testing.T) {
	t.Parallel()
	for _, v := range variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			objs := build(t, tree(t), v)
			if len(objs) < 30 {
				t.Fatalf("Build(%s) = %d objects, want the whole system (30 or more)", v.Name, len(objs))
			}
			var got []string
			for _, viol := range check(v, objs) {
				got = append(got, viol.String())
			}
			if len(got) > 0 {
				t.Errorf("check(%s) = %d violations, want none:%s", v.Name, len(got), joinLines(got))
			}
		})
	}
}

// TestBuildsMatchSchemas validates every object of every build against the
// strict schemas: Kubernetes kinds from the k8s.io/kubernetes OpenAPI
// document, Strimzi, Gateway API, KEDA and Prometheus Operator kinds from
// their CRDs.
func TestBuildsMatchSchemas(t *testing.T) {
	t.Parallel()
	val := schemaValidator(t)
	for _, v := range variants(t) {
		t.Run(v.Name, func(t *testing.T) {
			objs := build(t, tree(t), v)
			valid, problems := schemaErrors(t, val, objs)
			if len(problems) > 0 || valid != len(objs) {
				t.Errorf("validate(%s) = %d valid of %d, problems:%s", v.Name, valid, len(objs), joinLines(problems))
			}
			t.Logf("%s: %d objects valid", v.Name, valid)
		})
	}
}

// TestBaseHasPlaceholderTags shows why every overlay pins images: the base
// alone fails the image rule.
func TestBaseHasPlaceholderTags(t *testing.T) {
	t.Parallel()
	objs := build(t, tree(t), m.Variant{Name: "base", Dir: "base"})
	var images []string
	for _, v := range policy.Check(objs) {
		if v.Rule == policy.RuleImageTag {
			images = append(images, v.Object)
		}
	}
	slices.Sort(images)
	want := []string{"Deployment/aggregator", "Deployment/api"}
	if !slices.Equal(images, want) {
		t.Errorf("policy.Check(base) image-tag violations on %v, want %v", images, want)
	}
}

// TestOnlyProdIsProduction shows that the production rules are real: dev
// and staging, open on purpose, fail them (no write tokens; dev's CORS is *;
// their Kafka takes clients without authentication, without TLS and without
// authorization), while prod passes them (TestBuildsFollowPolicy). Each
// violation is expected on its own, so that no check hides behind another
// of the same rule and object.
func TestOnlyProdIsProduction(t *testing.T) {
	t.Parallel()
	var (
		writeAuth = "[write-auth] Deployment/api: container api: WRITE_TOKENS_FILE is not set"
		cors      = `[cors] Deployment/api: CORS_ALLOWED_ORIGINS holds "*"`
		kafkaAuth = []string{
			"[kafka-auth] Kafka/blackfriday: listener plain (port 9092) takes clients without authentication",
			"[kafka-auth] Kafka/blackfriday: listener plain (port 9092) is not TLS",
			"[kafka-auth] Kafka/blackfriday: authorization is off",
		}
	)
	tests := []struct {
		env  string
		want []string // each the start of one violation
	}{
		{"dev", append([]string{writeAuth, cors}, kafkaAuth...)},
		{"staging", append([]string{writeAuth}, kafkaAuth...)},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			objs := build(t, tree(t), m.Variant{Name: tt.env, Dir: "overlays/" + tt.env})
			var got []string
			for _, v := range policy.CheckProduction(objs) {
				got = append(got, v.String())
			}
			rest := slices.Clone(got)
			for _, w := range tt.want {
				i := slices.IndexFunc(rest, func(s string) bool { return strings.HasPrefix(s, w) })
				if i < 0 {
					t.Errorf("policy.CheckProduction(%s) has no violation %q", tt.env, w)
					continue
				}
				rest = slices.Delete(rest, i, i+1)
			}
			for _, s := range rest {
				t.Errorf("policy.CheckProduction(%s) has unexpected violation %q", tt.env, s)
			}
			if t.Failed() {
				t.Logf("all violations: %q", got)
			}
		})
	}
}

// TestOverlayShapes checks what each environment promises.
func TestOverlayShapes(t *testing.T) {
	t.Parallel()
	type shape struct {
		brokers, rf, minISR, partitions int64
		persistent, netpol              bool
		apiMax, aggMax                  int64
		pdbs                            int
	}
	tests := []struct {
		env  string
		want shape
	}{
		{"dev", shape{brokers: 1, rf: 1, minISR: 1, partitions: 6, apiMax: 3, aggMax: 3, pdbs: 1}},
		{"staging", shape{brokers: 3, rf: 3, minISR: 2, partitions: 12, persistent: true, netpol: true, apiMax: 12, aggMax: 6, pdbs: 2}},
		{"prod", shape{brokers: 3, rf: 3, minISR: 2, partitions: 12, persistent: true, netpol: true, apiMax: 30, aggMax: 12, pdbs: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			t.Parallel()
			objs := build(t, tree(t), m.Variant{Name: tt.env, Dir: "overlays/" + tt.env})
			var got shape
			for _, o := range objs {
				switch o.Kind() {
				case "KafkaNodePool":
					got.brokers, _ = m.Int(o, "spec", "replicas")
					got.persistent = m.String(o, "spec", "storage", "type") == "persistent-claim" ||
						m.String(o, "spec", "storage", "volumes") == "" && len(m.List(o, "spec", "storage", "volumes")) > 0 &&
							m.String(m.List(o, "spec", "storage", "volumes")[0], "type") == "persistent-claim"
				case "Kafka":
					got.minISR, _ = m.Int(o, "spec", "kafka", "config", "min.insync.replicas")
				case "KafkaTopic":
					if o.Name() == "sales" {
						got.rf, _ = m.Int(o, "spec", "replicas")
						got.partitions, _ = m.Int(o, "spec", "partitions")
					}
				case "NetworkPolicy":
					got.netpol = true
				case "PodDisruptionBudget":
					got.pdbs++
				case "HorizontalPodAutoscaler":
					n, _ := m.Int(o, "spec", "maxReplicas")
					if o.Name() == "api" {
						got.apiMax = n
					} else {
						got.aggMax = n
					}
				}
			}
			if got != tt.want {
				t.Errorf("shape(%s) = %+v, want %+v", tt.env, got, tt.want)
			}
		})
	}
}

// TestOverlaysHoldOnlyComposition keeps overlays to resources, components,
// images, replicas, patches and generators (STYLE.md), and the whole tree
// off the deprecated commonLabels.
func TestOverlaysHoldOnlyComposition(t *testing.T) {
	t.Parallel()
	allowed := []string{"apiVersion", "kind", "resources", "components", "images", "replicas", "patches",
		"configMapGenerator", "secretGenerator", "generators"}
	root := filepath.Join(repoRoot(t), "kustomize")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var k map[string]any
		if err := yaml.Unmarshal(b, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		for key := range k {
			if key == "commonLabels" {
				t.Errorf("%s uses commonLabels, want labels:", rel)
			}
			if strings.HasPrefix(rel, "overlays/") && !slices.Contains(allowed, key) {
				t.Errorf("%s has %s, want only %v", rel, key, allowed)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestComponentsHaveREADMEs: every component says, in a README of its own,
// what it adds and when to use it.
func TestComponentsHaveREADMEs(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(repoRoot(t), "kustomize", "components")
	comps, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comps {
		if !c.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, c.Name(), "README.md"))
		if err != nil || !bytes.Contains(b, []byte("**Adds:**")) || !bytes.Contains(b, []byte("**Use it**")) {
			t.Errorf("components/%s/README.md = %v, want one saying what it adds (**Adds:**) and when to use it (**Use it**)", c.Name(), err)
		}
	}
}
