package deploy_test

import (
	"bufio"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfiles checks each image's Dockerfile (multi-stage, pinned
// bases, static binary, non-root distroless) and, since no Docker engine
// runs here, builds the way its build stage does: in a context holding only
// what its COPY lines copy (whole directories, `COPY dir/ dir/`, and files
// into their own directory, `COPY dir/go.mod dir/`), go mod download, then
// go build, with GOWORK=off and CGO_ENABLED=0.
func TestDockerfiles(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	// Each image's module directory, which holds its Dockerfile: the two
	// services, and the load generator of the load-job component.
	for _, dir := range []string{"services/api", "services/aggregator", "tooling/loadgen"} {
		svc := filepath.Base(dir)
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(root, dir, "Dockerfile")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("ReadFile(%s) error: %v", path, err)
			}
			df := string(b)
			args := map[string]string{}
			for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)=(\S+)$`).FindAllStringSubmatch(df, -1) {
				args[m[1]] = m[2]
			}
			froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
			if len(froms) < 2 {
				t.Errorf("%s has %d stages, want a build stage and a runtime stage", path, len(froms))
			}
			for _, f := range froms {
				image := f[1]
				if v, ok := strings.CutPrefix(image, "${"); ok {
					image = args[strings.TrimSuffix(v, "}")]
				}
				if msg := pinned(image); msg != "" {
					t.Errorf("%s: FROM %s: %s", path, f[1], msg)
				}
			}
			runtime := args["RUNTIME_IMAGE"]
			for _, want := range []string{"distroless/static", ":nonroot@sha256:"} {
				if !strings.Contains(runtime, want) {
					t.Errorf("%s: RUNTIME_IMAGE = %q, want a distroless static nonroot image pinned by digest", path, runtime)
				}
			}
			for _, want := range []string{"CGO_ENABLED=0", "GOWORK=off", "\nUSER 65532:65532\n", "COPY gen/ gen/", "COPY " + dir + "/ " + dir + "/"} {
				if !strings.Contains(df, want) {
					t.Errorf("%s does not contain %q", path, want)
				}
			}
			if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err != nil {
				t.Fatalf("%s has no go.mod: %v", dir, err)
			}
			if testing.Short() {
				t.Skip("building is skipped in -short mode")
			}
			// The build context holds what the Dockerfile copies to the
			// same path: `COPY dir/ dir/` (the whole directory) and
			// `COPY dir/go.mod [dir/go.sum ...] dir/` (just those files).
			ctx := t.TempDir()
			var copied []string
			for _, line := range regexp.MustCompile(`(?m)^COPY [\w/. -]+/$`).FindAllString(df, -1) {
				args := strings.Fields(line)[1:]
				dest := args[len(args)-1]
				for _, src := range args[:len(args)-1] {
					switch {
					case src == dest:
						copyTree(t, filepath.Join(root, src), filepath.Join(ctx, src))
					case src[:strings.LastIndex(src, "/")+1] == dest:
						copyFile(t, filepath.Join(root, src), filepath.Join(ctx, src))
					default:
						continue
					}
					copied = append(copied, src)
				}
			}
			for _, args := range [][]string{{"mod", "download"}, {"build", "-trimpath", "-o", filepath.Join(ctx, "out", svc), "."}} {
				cmd := exec.Command("go", args...)
				cmd.Dir = filepath.Join(ctx, dir)
				cmd.Env = append(cleanEnv(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("go %s in a copy of %v (GOWORK=off), as the Dockerfile copies them, error: %v\n%s", strings.Join(args, " "), copied, err, out)
				}
			}
			// A static binary has no dynamic section interpreter.
			exe, err := os.ReadFile(filepath.Join(ctx, "out", svc))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(exe[:min(len(exe), 4096)]), "/lib64/ld-linux") {
				t.Errorf("%s binary is dynamically linked, want static", dir)
			}
		})
	}
	t.Run("dockerignore", func(t *testing.T) {
		t.Parallel()
		f, err := os.Open(filepath.Join(root, ".dockerignore"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var lines []string
		for s := bufio.NewScanner(f); s.Scan(); {
			lines = append(lines, strings.TrimSpace(s.Text()))
		}
		for _, want := range []string{"*", "!gen/", "!contract/", "!services/", "!tooling/"} {
			if !strings.Contains("\n"+strings.Join(lines, "\n")+"\n", "\n"+want+"\n") {
				t.Errorf(".dockerignore lines %q, want %q among them", lines, want)
			}
		}
	})
}

// pinned says what is wrong with a base image reference, or "".
func pinned(image string) string {
	if strings.Contains(image, "@sha256:") {
		return ""
	}
	_, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	switch {
	case !ok:
		return "no tag"
	case tag == "latest":
		return "latest"
	case !regexp.MustCompile(`\d+\.\d+\.\d+`).MatchString(tag):
		return "tag " + tag + " is not an exact version"
	}
	return ""
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(to), 0o755)
	}
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}
