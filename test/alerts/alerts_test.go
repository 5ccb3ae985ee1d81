// Package alerts_test runs promtool's rule unit tests (testdata/*.yaml) on
// the PrometheusRule of kustomize/components/service-monitor, as kustomize
// renders it for prod (kustomize/tests/prod-all): the rule file promtool
// reads is written from that build's spec.groups, never kept as a copy.
//
// make alerts-test runs it with PROMTOOL naming the pinned promtool. The
// test files leave out rule_files (the harness sets it) and any
// annotation without a template (the harness fills it from the rule); an
// annotation with a template must be spelt out.
package alerts_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// variant is the kustomization whose PrometheusRule is tested: prod with
// every optional component, as CI builds it.
const variant = "../../kustomize/tests/prod-all"

// rule is one alerting rule of the rendered PrometheusRule.
type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// rendered is the PrometheusRule's spec.groups, as generic YAML (to write
// back) and as rules (to check).
type rendered struct {
	groups []any
	rules  []rule
}

func render(t *testing.T) rendered {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), variant)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", variant, err)
	}
	var r rendered
	for _, res := range res.Resources() {
		if res.GetKind() != "PrometheusRule" {
			continue
		}
		obj, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := obj["spec"].(map[string]any)
		groups, _ := spec["groups"].([]any)
		r.groups = append(r.groups, groups...)
	}
	if len(r.groups) == 0 {
		t.Fatalf("kustomize build %s has no PrometheusRule with groups", variant)
	}
	var parsed []struct {
		Rules []rule `json:"rules"`
	}
	convert(t, r.groups, &parsed)
	for _, g := range parsed {
		for _, rl := range g.Rules {
			if rl.Alert != "" {
				r.rules = append(r.rules, rl)
			}
		}
	}
	return r
}

func (r rendered) rule(alert string) (rule, bool) {
	i := slices.IndexFunc(r.rules, func(rl rule) bool { return rl.Alert == alert })
	if i < 0 {
		return rule{}, false
	}
	return r.rules[i], true
}

// testFile is one of testdata/*.yaml, decoded generically so that the
// harness writes back exactly what it read plus what it fills in.
type testFile struct {
	name string
	doc  map[string]any
}

// testCase is one alert_rule_test entry: fires when it expects alerts,
// else it is quiet (the alert must not fire at eval_time).
type testCase struct {
	file, group string
	index       int              // in the group's alert_rule_test
	EvalTime    string           `json:"eval_time"`
	Alert       string           `json:"alertname"`
	ExpAlerts   []map[string]any `json:"exp_alerts"`
}

func (c testCase) fires() bool { return len(c.ExpAlerts) > 0 }

func (c testCase) String() string {
	kind := "quiet"
	if c.fires() {
		kind = "firing"
	}
	return fmt.Sprintf("%s: %q, %s case at %s for %s", c.file, c.group, kind, c.EvalTime, c.Alert)
}

func loadTests(t *testing.T) []testFile {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata/*.yaml (%v)", err)
	}
	var files []testFile
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		files = append(files, testFile{name: filepath.Base(p), doc: doc})
	}
	return files
}

func groupsOf(f testFile) []map[string]any {
	var groups []map[string]any
	for _, g := range asList(f.doc["tests"]) {
		if m, ok := g.(map[string]any); ok {
			groups = append(groups, m)
		}
	}
	return groups
}

func casesOf(t *testing.T, files []testFile) []testCase {
	t.Helper()
	var cases []testCase
	for _, f := range files {
		for _, g := range groupsOf(f) {
			name, _ := g["name"].(string)
			for i, entry := range asList(g["alert_rule_test"]) {
				c := testCase{file: f.name, group: name, index: i}
				convert(t, entry, &c)
				cases = append(cases, c)
			}
		}
	}
	return cases
}

// write writes the rule file and the test files into dir, each test file
// pointed at the rule file and its cases' static annotations filled in.
func write(t *testing.T, dir string, groups []any, r rendered, files []testFile) []string {
	t.Helper()
	writeYAML(t, filepath.Join(dir, "rules.yaml"), map[string]any{"groups": groups})
	var names []string
	for _, f := range files {
		doc := deepCopy(t, f.doc)
		doc["rule_files"] = []any{"rules.yaml"}
		for _, g := range asList(doc["tests"]) {
			for _, entry := range asList(asMap(g)["alert_rule_test"]) {
				e := asMap(entry)
				rl, _ := r.rule(fmt.Sprint(e["alertname"]))
				for _, exp := range asList(e["exp_alerts"]) {
					fillAnnotations(asMap(exp), rl)
				}
			}
		}
		writeYAML(t, filepath.Join(dir, f.name), doc)
		names = append(names, f.name)
	}
	return names
}

func fillAnnotations(exp map[string]any, rl rule) {
	ann := asMap(exp["exp_annotations"])
	if ann == nil {
		ann = map[string]any{}
	}
	for k, v := range rl.Annotations {
		if _, ok := ann[k]; !ok && !strings.Contains(v, "{{") {
			ann[k] = v
		}
	}
	exp["exp_annotations"] = ann
}

// promtool returns the promtool to run: $PROMTOOL (make alerts-test sets
// it). Without one the tests skip, or fail when CI=true.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("PROMTOOL is empty: run make alerts-test, which builds the pinned promtool")
	}
	t.Skip("PROMTOOL is empty: run make alerts-test, which builds the pinned promtool")
	return ""
}

func runPromtool(t *testing.T, bin, dir string, files []string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"test", "rules"}, files...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v", bin, err)
	}
	return string(out), err
}

// TestAlerts runs every test file against the rendered rules.
func TestAlerts(t *testing.T) {
	bin := promtool(t)
	r, files := render(t), loadTests(t)
	dir := t.TempDir()
	out, err := runPromtool(t, bin, dir, write(t, dir, r.groups, r, files))
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("promtool test rules (rules from kustomize build %s):\n%s", variant, out)
}

// TestEveryAlertIsTested checks that every alert has a firing case and a
// quiet one, the labels and annotations its routing and runbook need, and
// that no case names an alert the rule lacks: promtool passes a quiet case
// for an alert that does not exist.
func TestEveryAlertIsTested(t *testing.T) {
	t.Parallel()
	r, cases := render(t), casesOf(t, loadTests(t))
	for _, rl := range r.rules {
		var firing, quiet int
		for _, c := range cases {
			if c.Alert != rl.Alert {
				continue
			}
			if c.fires() {
				firing++
			} else {
				quiet++
			}
		}
		if firing == 0 || quiet == 0 {
			t.Errorf("%s: %d firing and %d quiet cases, want at least one of each", rl.Alert, firing, quiet)
		}
		if s := rl.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", rl.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if rl.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", rl.Alert, a)
			}
		}
	}
	for _, c := range cases {
		if _, ok := r.rule(c.Alert); !ok {
			t.Errorf("%v: the rule has no alert %s", c, c.Alert)
		}
	}
}

// TestEveryCaseCanFail breaks the alert of each case, one case at a time,
// and checks that promtool then fails that case: a firing case against an
// expression that never fires, a quiet case against one that always does
// (and no for). A case that passes either way tests nothing.
func TestEveryCaseCanFail(t *testing.T) {
	bin := promtool(t)
	r, files := render(t), loadTests(t)
	for _, c := range casesOf(t, files) {
		t.Run(fmt.Sprintf("%s/%s/%d", strings.TrimSuffix(c.file, ".yaml"), c.group, c.index), func(t *testing.T) {
			groups := deepCopy(t, r.groups)
			breakAlert(t, groups, c)
			dir := t.TempDir()
			names := write(t, dir, groups, r, []testFile{only(t, files, c)})
			out, err := runPromtool(t, bin, dir, names)
			if err == nil {
				t.Fatalf("%v passes with the alert broken:\n%s", c, out)
			}
			if !strings.Contains(out, "alertname: "+c.Alert) {
				t.Fatalf("%v: promtool failed, but not on the alert:\n%s", c, out)
			}
		})
	}
}

// breakAlert makes c's alert the opposite of what c expects.
func breakAlert(t *testing.T, groups []any, c testCase) {
	t.Helper()
	for _, g := range groups {
		for _, rl := range asList(asMap(g)["rules"]) {
			m := asMap(rl)
			if m["alert"] != c.Alert {
				continue
			}
			if c.fires() {
				m["expr"] = "vector(0) > 1"
			} else {
				m["expr"] = "vector(1)"
				delete(m, "for")
			}
			return
		}
	}
	t.Fatalf("%v: no alert %s in the rule", c, c.Alert)
}

// only returns c's test file with c's group holding c alone.
func only(t *testing.T, files []testFile, c testCase) testFile {
	t.Helper()
	i := slices.IndexFunc(files, func(f testFile) bool { return f.name == c.file })
	doc := deepCopy(t, files[i].doc)
	for _, g := range asList(doc["tests"]) {
		m := asMap(g)
		if m["name"] == c.group {
			m["alert_rule_test"] = []any{asList(m["alert_rule_test"])[c.index]}
			doc["tests"] = []any{m}
			return testFile{name: c.file, doc: doc}
		}
	}
	t.Fatalf("%v: group not found", c)
	return testFile{}
}

func asList(v any) []any { l, _ := v.([]any); return l }

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }

// convert decodes generic YAML into out, through JSON as sigs.k8s.io/yaml
// does.
func convert(t *testing.T, in, out any) {
	t.Helper()
	b, err := yaml.Marshal(in)
	if err == nil {
		err = yaml.Unmarshal(b, out)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func deepCopy[T any](t *testing.T, v T) T {
	t.Helper()
	var c T
	convert(t, v, &c)
	return c
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
