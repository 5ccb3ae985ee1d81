package settingstest

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"blackfriday.local/contract/settings"
)

// recorder is a testing.TB that records failures instead of failing, so
// that a test can see a check fail.
type recorder struct {
	testing.TB
	failures []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// failures runs check against a recorder and returns what it reported.
func failures(t *testing.T, check func(testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.failures
}

var declared = []settings.Setting{
	{Name: "KAFKA_BROKERS", Default: "b:9092", Help: "brokers"},
	{Name: "PORT", Help: "a 'port'", Field: "Port"},
}

func TestCheckDeclared(t *testing.T) {
	t.Parallel()
	if got := failures(t, func(tb testing.TB) { CheckDeclared(tb, declared) }); len(got) > 0 {
		t.Errorf("CheckDeclared() of good declarations reported %q", got)
	}
	bad := []settings.Setting{
		{Name: "A", Field: "A"},
		{Name: "B", Help: "b | c", Field: "B"},
		{Name: "C", Help: "c", Default: "1", DefaultText: "one", Field: "C"},
		{Name: "A", Help: "a", Field: "D"},
		{Name: "E", Help: "e", Field: "A"},
	}
	if got := failures(t, func(tb testing.TB) { CheckDeclared(tb, bad) }); len(got) != 5 {
		t.Errorf("CheckDeclared() of bad declarations reported %q, want 5 failures", got)
	}
}

func TestCheckREADME(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "README.md")
	begin := "<!-- svc settings: generated from services/svc/config.go by go generate ./services/svc -->\n"
	end := "<!-- end of svc settings -->\n"
	stale := "# svc\n\n" + begin + "| old |\n" + end + "\nmore\n"
	if err := os.WriteFile(path, []byte(stale), 0o644); err != nil {
		t.Fatal(err)
	}
	got := failures(t, func(tb testing.TB) { CheckREADME(tb, path, "svc", declared, false) })
	if len(got) != 1 || !strings.Contains(got[0], "stale: run go generate ./services/svc") {
		t.Errorf("CheckREADME() of a stale table reported %q, want it stale", got)
	}

	CheckREADME(t, path, "svc", declared, true)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "# svc\n\n" + begin + settings.Table(declared) + end + "\nmore\n"
	if string(b) != want {
		t.Errorf("CheckREADME(update) wrote %s, want %s", b, want)
	}
	CheckREADME(t, path, "svc", declared, false)

	got = failures(t, func(tb testing.TB) { CheckREADME(tb, path, "other", declared, false) })
	if len(got) != 1 || !strings.Contains(got[0], "around the other's settings") {
		t.Errorf("CheckREADME() without markers reported %q, want them missing", got)
	}
}

func TestCheckManifests(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(root, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kustomization.yaml", "configMapGenerator:\n  - name: svc-env\n    literals: [KAFKA_BROKERS=k:9092, PORT=1]\n")
	CheckManifests(t, root, "svc", declared)

	write("deployment.yml", "kind: Deployment\nspec: {template: {spec: {containers: [{name: svc, env: [{name: PROT}]}]}}}\n")
	got := failures(t, func(tb testing.TB) { CheckManifests(tb, root, "svc", declared) })
	if len(got) != 1 || !strings.Contains(got[0], "deployment.yml sets PROT for the svc") {
		t.Errorf("CheckManifests() with a misspelt variable reported %q", got)
	}

	// OpenTelemetry's variables pass by name; a misspelt one does not.
	write("deployment.yml", "kind: Deployment\nspec: {template: {spec: {containers: [{name: svc, env: [{name: OTEL_EXPORTER_OTLP_ENDPOINT}, {name: OTEL_EXPORTER_OTLP_PROTOCOL}]}]}}}\n")
	CheckManifests(t, root, "svc", declared)
	write("deployment.yml", "kind: Deployment\nspec: {template: {spec: {containers: [{name: svc, env: [{name: OTEL_EXPORTER_OTLP_ENDPIONT}]}]}}}\n")
	got = failures(t, func(tb testing.TB) { CheckManifests(tb, root, "svc", declared) })
	if len(got) != 1 || !strings.Contains(got[0], "deployment.yml sets OTEL_EXPORTER_OTLP_ENDPIONT for the svc") {
		t.Errorf("CheckManifests() with a misspelt OpenTelemetry variable reported %q", got)
	}
	got = failures(t, func(tb testing.TB) { CheckManifests(tb, root, "other", declared) })
	if len(got) != 1 || !strings.Contains(got[0], "found no KAFKA_BROKERS for the other") {
		t.Errorf("CheckManifests() of a service the manifests never name reported %q", got)
	}
}

func TestManifestEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte("# comment\nFROM_FILE=1\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `configMapGenerator:
  - name: svc-env
    envs: [env]
    literals: [FROM_LITERAL=x]
  - name: other-env
    literals: [NOT_OURS=x]
patches:
  - patch: |-
      kind: Deployment
      spec:
        template:
          spec:
            containers:
              - name: svc
                env:
                  - name: FROM_PATCH
---
kind: Deployment
spec:
  template:
    spec:
      containers:
        - name: svc
          env:
            - name: FROM_CONTAINER
              valueFrom: {secretKeyRef: {name: s, key: k}}
        - name: sidecar
          env:
            - name: NOT_OURS_EITHER
`
	got := map[string]bool{}
	m := manifest{service: "svc", dir: dir, where: "test.yaml", add: func(name, _ string) { got[name] = true }}
	if err := m.env(src); err != nil {
		t.Fatal(err)
	}
	want := []string{"FROM_CONTAINER", "FROM_FILE", "FROM_LITERAL", "FROM_PATCH"}
	if names := slices.Sorted(maps.Keys(got)); !slices.Equal(names, want) {
		t.Errorf("manifest.env() found %q, want %q", names, want)
	}
}
