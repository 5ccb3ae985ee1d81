package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "blackfriday.local/gen/blackfriday"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// k6Dir is the k6 scripts' directory, from this package's.
const k6Dir = "../../k6"

var (
	rpcPath    = regexp.MustCompile(`blackfriday(?:\.[a-z0-9_]+)*\.[A-Z][A-Za-z0-9]*/[A-Z][A-Za-z0-9]*`)
	loadCall   = regexp.MustCompile(`client\.load\(\s*\[([^\]]*)\]\s*,([^)]*)\)`)
	quoted     = regexp.MustCompile(`'([^']*)'|"([^"]*)"`)
	jsImport   = regexp.MustCompile(`(?m)^\s*import\s+(?:[^'"]*\s+from\s+)?['"](\.[^'"]+)['"]`)
	protoImprt = regexp.MustCompile(`(?m)^import\s+(?:public\s+|weak\s+)?"([^"]+)";`)
)

// TestK6Scripts checks the k6 scripts without k6 (which is not installed
// here): they parse (node --check), every RPC path they name is a method of
// our schemas, every proto file they load exists with all its imports under
// the import roots they give, every local module they import exists, and the
// sales their generator makes are valid.
func TestK6Scripts(t *testing.T) {
	t.Parallel()
	scripts, err := filepath.Glob(filepath.Join(k6Dir, "*.js"))
	if err != nil {
		t.Fatal(err)
	}
	libs, _ := filepath.Glob(filepath.Join(k6Dir, "lib", "*.js"))
	for _, want := range []string{"json.js", "grpc.js", "compare.js"} {
		if _, err := os.Stat(filepath.Join(k6Dir, want)); err != nil {
			t.Errorf("k6/%s is missing", want)
		}
	}
	node, nodeErr := exec.LookPath("node")
	if nodeErr != nil {
		if os.Getenv("CI") == "true" {
			t.Errorf("node is not installed: cannot run node --check on the k6 scripts")
		} else {
			t.Logf("node is not installed: skipping node --check")
		}
	}
	paths := 0
	for _, path := range append(scripts, libs...) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(path)
		if node != "" {
			if out, err := exec.Command(node, "--check", path).CombinedOutput(); err != nil {
				t.Errorf("node --check %s: %v\n%s", name, err, out)
			}
		}
		for _, p := range rpcPath.FindAllString(string(src), -1) {
			paths++
			if err := checkMethod(p); err != "" {
				t.Errorf("%s names %s: %s", name, p, err)
			}
		}
		for _, m := range jsImport.FindAllStringSubmatch(string(src), -1) {
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), m[1])); err != nil {
				t.Errorf("%s imports %s, which does not exist", name, m[1])
			}
		}
		for _, m := range loadCall.FindAllStringSubmatch(string(src), -1) {
			var roots []string
			for _, q := range strings2(m[1]) {
				roots = append(roots, filepath.Join(filepath.Dir(path), q))
			}
			files := strings2(m[2])
			if len(roots) == 0 || len(files) == 0 {
				t.Errorf("%s: client.load(%s, %s) names no roots or no files", name, m[1], m[2])
			}
			for _, f := range files {
				checkProto(t, name, roots, f, map[string]bool{})
			}
		}
	}
	if paths == 0 {
		t.Error("the k6 scripts name no RPC path")
	}
	if node != "" {
		checkGenerator(t, node)
	}
}

// strings2 returns the quoted strings in s.
func strings2(s string) []string {
	var out []string
	for _, m := range quoted.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2])
	}
	return out
}

// checkMethod returns "" when path (service/method) is a method of a
// registered service.
func checkMethod(path string) string {
	svc, method, _ := strings.Cut(path, "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return "no such service in proto/"
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return "not a service"
	}
	if sd.Methods().ByName(protoreflect.Name(method)) == nil {
		return "no such method"
	}
	return ""
}

// checkProto checks that file resolves under one of roots, and so do its
// imports (k6 bundles the well-known types).
func checkProto(t *testing.T, script string, roots []string, file string, seen map[string]bool) {
	t.Helper()
	if seen[file] || strings.HasPrefix(file, "google/protobuf/") {
		return
	}
	seen[file] = true
	for _, root := range roots {
		src, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			continue
		}
		for _, m := range protoImprt.FindAllStringSubmatch(string(src), -1) {
			checkProto(t, script, roots, m[1], seen)
		}
		return
	}
	hint := ""
	if strings.HasPrefix(file, "buf/validate/") {
		hint = " (make tools copies it into third_party/protovalidate)"
	}
	t.Errorf("%s loads %s, found under none of its import roots %v%s", script, file, roots, hint)
}

// checkGenerator runs k6/lib/sales.js under node (it uses no k6 module) and
// checks its sales against the schema's rules.
func checkGenerator(t *testing.T, node string) {
	t.Helper()
	lib, err := filepath.Abs(filepath.Join(k6Dir, "lib", "sales.js"))
	if err != nil {
		t.Fatal(err)
	}
	script := `import(process.argv[1]).then((m) => {
  const next = m.generator(7);
  const out = [];
  for (let i = 0; i < 2000; i++) { const s = next(); out.push({ sale: m.connectSale(s), venta: JSON.parse(m.ventaBody(s)) }); }
  console.log(JSON.stringify(out));
});`
	out, err := exec.Command(node, "--input-type=module", "-e", script, "file://"+lib).Output()
	if err != nil {
		t.Fatalf("running k6/lib/sales.js under node: %v", err)
	}
	var sales []struct {
		Sale struct {
			Category   string `json:"category"`
			ProductID  string `json:"productId"`
			PriceCents string `json:"priceCents"`
			Quantity   int    `json:"quantity"`
		} `json:"sale"`
		Venta struct {
			Categoria string  `json:"categoria"`
			Precio    float64 `json:"precio"`
		} `json:"venta"`
	}
	if err := json.Unmarshal(out, &sales); err != nil {
		t.Fatalf("k6/lib/sales.js output: %v", err)
	}
	id := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	cats := map[string]bool{}
	for i, s := range sales {
		v, ok := salesv1.Category_value[s.Sale.Category]
		price := s.Sale.PriceCents
		if !ok || v == 0 || !id.MatchString(s.Sale.ProductID) || s.Sale.Quantity < 1 || s.Sale.Quantity > 10000 ||
			price == "" || price[0] == '0' || len(price) > 9 || s.Venta.Precio <= 0 {
			t.Fatalf("k6 sale %d = %+v, not valid by the schema", i, s)
		}
		cats[s.Sale.Category] = true
	}
	if len(cats) != 4 {
		t.Errorf("k6 sales cover %d categories, want 4", len(cats))
	}
}
