package deploy_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/yannh/kubeconform/pkg/validator"

	"blackfriday.local/contract/testenv"
	m "blackfriday.local/test/deploy/internal/manifest"
	"blackfriday.local/test/deploy/internal/policy"
	"blackfriday.local/test/deploy/internal/schema"
)

// overlays are the environments.
var overlays = []string{"dev", "staging", "prod"}

// variants lists every build the checks cover: each overlay, and each
// combination of components checked in under kustomize/tests/ (each
// overlay with every optional component on top, "<env>-all").
func variants(t testing.TB) []m.Variant {
	t.Helper()
	var vs []m.Variant
	for _, env := range overlays {
		vs = append(vs, m.Variant{Name: env, Dir: "overlays/" + env})
	}
	dirs, err := os.ReadDir(filepath.Join(repoRoot(t), "kustomize", "tests"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() {
			vs = append(vs, m.Variant{Name: d.Name(), Dir: "tests/" + d.Name()})
		}
	}
	return vs
}

// variant returns the build named name.
func variant(t testing.TB, name string) m.Variant {
	t.Helper()
	for _, v := range variants(t) {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no build named %s: want an overlay or a directory of kustomize/tests", name)
	return m.Variant{}
}

// production reports whether a variant is a production build, which
// follows the production rules too: prod, alone or under components.
func production(v m.Variant) bool { return v.Name == "prod" || strings.HasPrefix(v.Name, "prod-") }

// check applies the policy rules the variant must follow.
func check(v m.Variant, objs []m.Object) []policy.Violation {
	if production(v) {
		return policy.CheckProduction(objs)
	}
	return policy.Check(objs)
}

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// tree loads a fresh in-memory copy of kustomize/.
func tree(t testing.TB) *m.Tree {
	t.Helper()
	tr, err := m.Load(filepath.Join(repoRoot(t), "kustomize"))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func build(t testing.TB, tr *m.Tree, v m.Variant) []m.Object {
	t.Helper()
	objs, err := tr.Build(v)
	if err != nil {
		t.Fatalf("Build(%s) error: %v", v.Name, err)
	}
	return objs
}

// schemaValidator validates against the schemas of make deploy-schemas
// (BF_DEPLOY_SCHEMAS), strictly.
func schemaValidator(t testing.TB) validator.Validator {
	t.Helper()
	dir := testenv.Need(t, "BF_DEPLOY_SCHEMAS", "make deploy-test generates the schemas")
	version := os.Getenv("BF_DEPLOY_K8S_VERSION")
	if version == "" {
		version = "1.37.2"
	}
	v, err := validator.New([]string{
		filepath.Join(dir, "kubernetes"),
		filepath.Join(dir, "crds", schema.CRDTemplate),
	}, validator.Opts{Strict: true, KubernetesVersion: version})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// schemaErrors validates objects and returns one line per invalid one (a
// missing schema is an error too: every kind must be known).
func schemaErrors(t testing.TB, v validator.Validator, objs []m.Object) (valid int, problems []string) {
	t.Helper()
	y, err := m.Encode(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range v.Validate("build.yaml", io.NopCloser(bytes.NewReader(y))) {
		switch r.Status {
		case validator.Valid:
			valid++
		case validator.Empty:
		default:
			sig, _ := r.Resource.Signature()
			name := "?"
			if sig != nil {
				name = sig.Kind + "/" + sig.Name
			}
			// The error's text names the deepest failing path ("at
			// '/spec/...': additional properties 'x' not allowed"); the
			// structured errors may stop at a $ref ("validation failed").
			var parts []string
			if r.Err != nil {
				text := r.Err.Error()
				if _, after, ok := strings.Cut(text, "#' - "); ok {
					text = after
				}
				parts = append(parts, text)
			}
			msg := strings.Join(parts, "; ")
			problems = append(problems, name+": "+msg)
		}
	}
	return valid, problems
}

func joinLines(lines []string) string {
	return "\n\t" + strings.Join(lines, "\n\t")
}
