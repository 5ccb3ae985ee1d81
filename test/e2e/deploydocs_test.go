package e2e

import (
	"bytes"
	"cmp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	loadproto "blackfriday.local/tooling/loadgen/protocol"
	stacks "blackfriday.local/tooling/stack"
)

// docLoadRun is one load job docs/deploy.md has the reader start: the
// make variables of its `make deploy-load` line, a loop's value filled in.
type docLoadRun map[string]string

var (
	shBlock   = regexp.MustCompile("(?s)```sh\n(.*?)```")
	forLoop   = regexp.MustCompile(`for (\w+) in ([^;]+); do`)
	makeVarRE = regexp.MustCompile(`^([A-Z_]+)=(.*)$`)
	callsOK   = regexp.MustCompile(`\((\d+) calls, (\d+) ok\)`)
	noErrors  = regexp.MustCompile(`(?m)^\s*errors\s+none$`)
)

// deployDocLoadRuns finds every `make deploy-load` in the sh blocks of
// doc, once per value of the loop around it.
func deployDocLoadRuns(t *testing.T, doc string) []docLoadRun {
	t.Helper()
	var runs []docLoadRun
	for _, m := range shBlock.FindAllStringSubmatch(doc, -1) {
		block := strings.ReplaceAll(m[1], "\\\n", " ")
		if !strings.Contains(block, "make deploy-load") {
			continue
		}
		loopVar, values := "", []string{""}
		if l := forLoop.FindStringSubmatch(block); l != nil {
			loopVar, values = l[1], strings.Fields(l[2])
		}
		for line := range strings.SplitSeq(block, "\n") {
			fields := strings.Fields(line)
			i := slices.Index(fields, "deploy-load")
			if i < 1 || fields[i-1] != "make" {
				continue
			}
			for _, v := range values {
				run := docLoadRun{}
				for _, f := range fields[i+1:] {
					kv := makeVarRE.FindStringSubmatch(f)
					if kv == nil {
						t.Fatalf("docs/deploy.md: %q in %q is not a make variable", f, line)
					}
					val := strings.Trim(kv[2], `"'`)
					if loopVar != "" {
						val = strings.ReplaceAll(val, "$"+loopVar, v)
					}
					run[kv[1]] = val
				}
				runs = append(runs, run)
			}
		}
	}
	return runs
}

// loadJobArgs renders what make deploy-load would apply for run, with the
// duration given, and returns the load Job's container args.
func loadJobArgs(t *testing.T, root string, run docLoadRun, duration string) []string {
	t.Helper()
	args := []string{"-s", "--no-print-directory", "deploy-load-render"}
	for k, v := range run {
		if k == "LOAD_DURATION" {
			continue
		}
		args = append(args, k+"="+v)
	}
	args = append(args, "LOAD_DURATION="+duration)
	cmd := exec.Command("make", args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	for doc := range strings.SplitSeq(string(out), "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Name string }
			Spec     struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name    string
							Command []string
							Args    []string
						}
					}
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("make deploy-load-render: %v", err)
		}
		if obj.Kind == "Job" && obj.Metadata.Name == "loadgen" {
			c := obj.Spec.Template.Spec.Containers
			if len(c) != 1 || len(c[0].Command) != 0 {
				t.Fatalf("the load Job has containers %+v, want one running the image's loadgen", c)
			}
			return c[0].Args
		}
	}
	t.Fatalf("make %s rendered no Job loadgen", strings.Join(args, " "))
	return nil
}

// TestDeployDocsLoadJobs runs the load Job of every `make deploy-load`
// docs/deploy.md gives, once per value of its loop: rendered as make
// deploy-load would apply it, the Job's args run unchanged by the load
// generator against a real api, but for the api Service's address (this
// api's) and a shorter LOAD_DURATION. Every call must succeed, and the
// comparison loop must cover every unary protocol.
func TestDeployDocsLoadJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the overlays and runs the load generator")
	}
	root, err := stacks.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	runs := deployDocLoadRuns(t, string(doc))
	covered := map[string]bool{}
	for _, r := range runs {
		covered[r["LOAD_PROTOCOL"]] = true
	}
	for _, n := range loadproto.Names() {
		if n != loadproto.Batch && n != loadproto.GRPCConnectGo && !covered[string(n)] {
			t.Errorf("docs/deploy.md loads no %s: the in-cluster comparison must run every unary protocol", n)
		}
	}
	loadgen := filepath.Join(t.TempDir(), "loadgen")
	build := exec.Command("go", "build", "-o", loadgen, "./tooling/loadgen")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build loadgen: %v\n%s", err, out)
	}
	s := newStack(t)
	s.startAPI()
	for _, run := range runs {
		name := cmp.Or(run["LOAD_PROTOCOL"], "default")
		t.Run(name, func(t *testing.T) {
			args := loadJobArgs(t, root, run, "2s")
			i := slices.Index(args, "http://api:8080")
			if i < 0 {
				t.Fatalf("the load Job's args %q do not target the api Service http://api:8080", args)
			}
			args[i] = s.url()
			out, err := exec.Command(loadgen, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("loadgen %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			m := callsOK.FindSubmatch(out)
			if m == nil {
				t.Fatalf("loadgen %s printed no call count:\n%s", strings.Join(args, " "), out)
			}
			calls, _ := strconv.Atoi(string(m[1]))
			ok, _ := strconv.Atoi(string(m[2]))
			if calls == 0 || ok == 0 || !noErrors.Match(out) {
				t.Fatalf("loadgen %s: %d calls, %d ok, want every call acknowledged and no error:\n%s", strings.Join(args, " "), calls, ok, out)
			}
			t.Logf("loadgen %s: %d calls, no error", strings.Join(args, " "), calls)
		})
	}
}
