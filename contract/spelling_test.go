package contract_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"blackfriday.local/contract/keys"
	"blackfriday.local/contract/record"
	salesv1 "blackfriday.local/gen/blackfriday/sales/v1"
)

// exceptions are the spellings still outside the contract, by file (from
// the repository root) and literal. An exception that no longer matches
// fails the test, so that the list only shrinks.
var exceptions = []struct{ file, value string }{}

// TestSpelledOnce holds every non-test Go file outside contract/ and gen/ to
// the contract: none spells a record header name, the content type or the
// schema name, and none spells a Valkey key name or builds one from a
// literal. A copy of a name drifts from the original unnoticed; a reference
// to the contract cannot.
func TestSpelledOnce(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("the repository root %s has no go.work: %v", root, err)
	}
	n := contractNames()
	fset := token.NewFileSet()
	scanned := map[string]bool{}
	var found []finding
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "contract" || rel == "gen" || skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := n.scan(fset, rel, src)
		if err != nil {
			return err
		}
		scanned[rel] = true
		found = append(found, f...)
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	// A scan that reads nothing passes; make sure it read the services.
	for _, want := range []string{
		"services/api/internal/ingest/producer.go",
		"services/api/internal/analytics/store.go",
		"services/aggregator/internal/store/encode.go",
		"services/aggregator/internal/aggregate/decode.go",
		"tooling/loadgen/internal/truth/truth.go",
		"test/deploy/internal/dashboard/dashboard.go",
	} {
		if !scanned[want] {
			t.Errorf("the scan did not read %s", want)
		}
	}

	excused := make([]bool, len(exceptions))
	for _, f := range found {
		i := slices.IndexFunc(exceptions, func(e struct{ file, value string }) bool {
			return e.file == f.file && e.value == f.value
		})
		if i >= 0 {
			excused[i] = true
			continue
		}
		t.Errorf("%s:%d spells %q, %s: use the contract (blackfriday.local/contract/record or keys) instead", f.file, f.line, f.value, f.what)
	}
	for i, e := range exceptions {
		if !excused[i] {
			t.Errorf("%s no longer spells %q: remove its exception from contract/spelling_test.go", e.file, e.value)
		}
	}
}

// TestScan holds the scan to finding what TestSpelledOnce looks for, and
// to leaving alone the same words when they name something else.
func TestScan(t *testing.T) {
	t.Parallel()
	const src = `package p

type config struct {
	Prefix string ` + "`env:\"VALKEY_KEY_PREFIX\" envDefault:\"bf:\"`" + `
	Schema string ` + "`json:\"schema\"`" + `
}

func spelled(prefix, id, topic string, p int32) []string {
	h := []string{"content-type", "schema", "ingest-protocol", "dlq-reason", "dlq-offset"}
	h = append(h, "application/x-protobuf", "blackfriday.sales.v1.Sale")
	return append(h,
		prefix+"totals",
		prefix+"offsets",
		prefix+"cat:"+id,
		prefix+"rank:units",
		"bf:price-index",
		fmt.Sprintf("%sseen:%s", prefix, id),
		"rate:electronics:",
		topic+":"+strconv.Itoa(int(p))+":topic-id",
	)
}

func clean(w http.ResponseWriter, log *slog.Logger, port int) {
	w.Header().Set("Content-Type", "application/json")
	log.Info("assigned", "offsets", 3, "totals", 4)
	_ = "127.0.0.1:" + strconv.Itoa(port)
	_ = fmt.Errorf("totals: %w", err)
	_ = "price history"
}
`
	found, err := contractNames().scan(token.NewFileSet(), "p.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range found {
		got = append(got, f.value)
	}
	want := []string{
		"bf:",
		"content-type", "schema", "ingest-protocol", "dlq-reason", "dlq-offset",
		"application/x-protobuf", "blackfriday.sales.v1.Sale",
		"totals", "offsets", "cat:", "rank:units", "bf:price-index", "%sseen:%s",
		"rate:electronics:", ":topic-id",
	}
	if !slices.Equal(got, want) {
		t.Errorf("scan found %q, want %q", got, want)
	}
}

// names are the spellings that belong to the contract alone, taken from it.
type names struct {
	// exact are literals that spell a name whole: the header names and
	// values, the offsets hash's field suffixes.
	exact map[string]string
	// stems are the key names after the prefix, up to the first variable
	// part: "totals", "cat:", …
	stems []string
	// prefix is the default key prefix.
	prefix string
}

func contractNames() names {
	n := names{
		exact: map[string]string{
			record.HeaderContentType:    "a record header name",
			record.HeaderSchema:         "a record header name",
			record.HeaderIngestProtocol: "a record header name",
			record.HeaderDLQReason:      "a record header name",
			record.HeaderDLQTopic:       "a record header name",
			record.HeaderDLQPartition:   "a record header name",
			record.HeaderDLQOffset:      "a record header name",
			record.HeaderTraceParent:    "a record header name",
			record.HeaderTraceState:     "a record header name",
			record.ContentTypeProtobuf:  "the record content type",
			record.Schema():             "the record schema name",
		},
		prefix: keys.DefaultPrefix,
	}
	k := keys.New("")
	c := salesv1.Category_CATEGORY_ELECTRONICS
	name := keys.CategoryName(c)
	field := keys.OffsetField("t", 1)
	n.stems = []string{
		k.Offsets(),
		k.Totals(),
		k.Ingest(),
		k.RankUnits(),
		k.PriceIndex(),
		strings.TrimSuffix(k.Category(c), name),
		strings.TrimSuffix(k.RankUnitsCategory(c), name),
		k.Price(""),
		strings.TrimSuffix(k.RatePattern(c), name+":*"),
		strings.TrimSuffix(k.RateLog(c), name),
		strings.TrimSuffix(k.Seen("t", 1), field),
	}
	n.exact[strings.TrimPrefix(keys.TopicIDField("t", 1), field)] = "a field of the offsets hash"
	n.exact[strings.TrimPrefix(keys.EpochField("t", 1), field)] = "a field of the offsets hash"
	return n
}

// finding is a literal that spells a name of the contract.
type finding struct {
	file  string
	line  int
	value string
	what  string
}

// tagValue matches one key:"value" pair of a struct tag.
var tagValue = regexp.MustCompile(`\w+:"((?:[^"\\]|\\.)*)"`)

// scan returns the literals of one Go file that spell a name of the
// contract, in source order.
func (n names) scan(fset *token.FileSet, file string, src []byte) ([]finding, error) {
	f, err := parser.ParseFile(fset, file, src, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	tags := map[*ast.BasicLit]bool{}
	joined := map[*ast.BasicLit]bool{}
	ast.Inspect(f, func(node ast.Node) bool {
		switch x := node.(type) {
		case *ast.Field:
			if x.Tag != nil {
				tags[x.Tag] = true
			}
		case *ast.BinaryExpr:
			if x.Op == token.ADD {
				for _, e := range []ast.Expr{x.X, x.Y} {
					if lit, ok := ast.Unparen(e).(*ast.BasicLit); ok {
						joined[lit] = true
					}
				}
			}
		}
		return true
	})
	var out []finding
	ast.Inspect(f, func(node ast.Node) bool {
		lit, ok := node.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		v, err := strconv.Unquote(lit.Value)
		if err != nil {
			return true
		}
		add := func(value, what string) {
			out = append(out, finding{file: file, line: fset.Position(lit.Pos()).Line, value: value, what: what})
		}
		if tags[lit] {
			// A tag names fields of other formats ("schema" in a JSON
			// document); only a key name is the contract's there.
			for _, m := range tagValue.FindAllStringSubmatch(v, -1) {
				if what := n.keyName(m[1], false); what != "" {
					add(m[1], what)
				}
			}
			return true
		}
		if what, ok := n.exact[v]; ok {
			add(v, what)
		} else if what := n.keyName(v, joined[lit]); what != "" {
			add(v, what)
		}
		return true
	})
	return out, nil
}

// keyName says what key name v spells or starts to build, or "" for none.
// joined says v is concatenated with something: a word like "totals" is a
// key name only there.
func (n names) keyName(v string, joined bool) string {
	if strings.HasPrefix(v, n.prefix) {
		return "a key under the default prefix"
	}
	for _, s := range n.stems {
		switch {
		case strings.ContainsAny(s, ":-") && strings.HasPrefix(v, s):
			return "a key name"
		case joined && strings.HasPrefix(v, s):
			return "a piece of a key name"
		case strings.Contains(v, "%s"+s) || strings.Contains(v, "%v"+s):
			return "a key name format"
		}
	}
	return ""
}

// skipDir reports whether a directory holds no Go source of ours.
func skipDir(name string) bool {
	switch name {
	case "node_modules", "third_party", "testdata", "vendor":
		return true
	}
	return strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}
