package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"sigs.k8s.io/yaml"

	"blackfriday.local/contract/testenv"
	"blackfriday.local/test/deploy/internal/dashboard"
)

// dashboardFiles are the provisioned dashboards.
func dashboardFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "kustomize", "base", "grafana", "dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards found (%v)", err)
	}
	return files
}

// provisioned reads the data sources kustomize/base/grafana/datasources.yaml
// provisions.
func provisioned(t testing.TB) []dashboard.Provisioned {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "kustomize", "base", "grafana", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Datasources []dashboard.Provisioned `json:"datasources"`
	}
	if err := yaml.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p.Datasources
}

// target is the data source a target queries, resolved as provisioned: its
// own, else its panel's.
func target(t testing.TB, d *dashboard.Dashboard, p dashboard.Panel, tg dashboard.Target, ds []dashboard.Provisioned) dashboard.Provisioned {
	t.Helper()
	ref := tg.Datasource
	if ref == nil {
		ref = p.Datasource
	}
	got, err := d.Resolve(ref, ds)
	if err != nil {
		t.Fatalf("%s: panel %q target %s: %v", d.UID, p.Title, tg.RefID, err)
	}
	return got
}

// TestDashboardsAreWellFormed checks, without Valkey, that every panel
// queries a provisioned data source through the dashboard's data source
// variable, that the dashboard imports elsewhere (DatasourceProblems), that
// the Redis queries use commands
// the plugin runs, that the business dashboard reads every aggregate of
// DESIGN.md, and that the protocol dashboard reads the services' metrics.
func TestDashboardsAreWellFormed(t *testing.T) {
	t.Parallel()
	ds := provisioned(t)
	var keys, fields, exprs []string
	for _, file := range dashboardFiles(t) {
		d, err := dashboard.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range d.DatasourceProblems() {
			t.Error(msg)
		}
		for _, v := range d.Templating.List {
			if v.Datasource != nil {
				if _, err := d.Resolve(v.Datasource, ds); err != nil {
					t.Errorf("%s: variable %s: %v", d.UID, v.Name, err)
				}
			}
		}
		for _, p := range d.AllPanels() {
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", d.UID, p.Title)
			}
			for _, tg := range p.Targets {
				if target(t, d, p, tg, ds).Type == dashboard.PluginID {
					if _, err := dashboard.Command(tg, time.Now(), time.Now()); err != nil {
						t.Errorf("%s: panel %q: %v", d.UID, p.Title, err)
					}
					keys = append(keys, tg.KeyName)
					fields = append(fields, strings.Fields(tg.Field)...)
				} else {
					exprs = append(exprs, tg.Expr)
				}
			}
		}
	}
	for _, want := range []string{"bf:totals", "bf:cat:electronics", "bf:cat:beauty", "bf:ingest", "bf:rank:units",
		"bf:rank:units:$category", "bf:price:$product", "bf:ratelog:electronics"} {
		if !slices.Contains(keys, want) {
			t.Errorf("business dashboard reads keys %v, want %s among them", keys, want)
		}
	}
	for _, want := range []string{"sales", "units", "revenue_cents", "price_sum_cents", "min_price_cents", "max_price_cents", "dead_letters", "duplicates"} {
		if !slices.Contains(fields, want) {
			t.Errorf("business dashboard reads fields %v, want %s among them", fields, want)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, metric := range []string{"bf_api_requests_total", "bf_api_request_duration_seconds_bucket", "bf_api_producer_buffered_records",
		"bf_api_producer_buffer_limit", "bf_aggregator_batch_records_bucket", "bf_aggregator_apply_duration_seconds_bucket",
		"bf_aggregator_lag_records", "bf_aggregator_dead_letters_total", "bf_aggregator_duplicates_total",
		"bf_aggregator_sales_applied_total"} {
		if !strings.Contains(all, metric) {
			t.Errorf("protocol dashboard queries do not use %s", metric)
		}
	}
}

// TestDashboardQueriesReturnData fills a real Valkey with real aggregates
// (the real aggregator binary, fed by an in-process Kafka) under a random
// key prefix, then runs every Redis query of every panel, for every value
// of the variables it uses, as the read-only ACL user "reader" with the
// exact rules of kustomize/base/valkey/acl-rules, and checks that each
// returns data. Values are checked against the sales produced: the
// averages the panels compute must equal exact sums over counts.
func TestDashboardQueriesReturnData(t *testing.T) {
	addr := testenv.Valkey(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis.NewClient(%s) error: %v", addr, err)
	}
	defer admin.Close()

	run := randomHex(t)
	prefix := "bfdash" + run + ":"
	users := aclUsers(t, ctx, admin, run, prefix)
	defer cleanupValkey(t, admin, prefix, users)

	truth := fillValkey(t, ctx, addr, prefix, users["aggregator"])

	reader, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true,
		Username: users["reader"].name, Password: users["reader"].password})
	if err != nil {
		t.Fatalf("connecting as the reader ACL user: %v", err)
	}
	defer reader.Close()

	ds := provisioned(t)
	checked := 0
	for _, file := range dashboardFiles(t) {
		d, err := dashboard.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		values := variableValues(t, ctx, reader, d, ds, prefix)
		from, to := timeRange(t, d)
		for _, p := range d.AllPanels() {
			for _, tg := range p.Targets {
				if target(t, d, p, tg, ds).Type != dashboard.PluginID {
					continue
				}
				for _, combo := range combinations(tg.Vars(), values) {
					name := d.UID + "/" + p.Title + "/" + tg.RefID
					for _, v := range tg.Vars() {
						name += "/" + v + "=" + combo[v]
					}
					t.Run(name, func(t *testing.T) {
						exp := tg.Expand(combo, prefix)
						frame, cmd, err := dashboard.Run(ctx, reader, exp, from, to)
						if err != nil {
							t.Fatalf("Run(%q) error: %v", cmd, err)
						}
						if frame.Rows() == 0 || len(frame.Fields) == 0 {
							t.Fatalf("Run(%q) = no data, want data", cmd)
						}
						out, err := dashboard.Apply(frame, p.Transformations)
						if err != nil {
							t.Fatalf("transformations of %q on %q: %v", p.Title, cmd, err)
						}
						for _, msg := range truth.problems(p.Title, exp, frame, out) {
							t.Error(msg)
						}
						t.Logf("%q -> %d fields, %d rows", cmd, len(frame.Fields), frame.Rows())
					})
					checked++
				}
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked %d Redis queries, want the business dashboard's (20 or more)", checked)
	}
	t.Logf("checked %d Redis queries against real aggregates (%d sales)", checked, truth.total.sales)
}

// aclUser is a test user made from acl-rules.
type aclUser struct{ name, password string }

// aclUsers creates the users of kustomize/base/valkey/acl-rules on the
// test server, named "<run>-<user>", with the key pattern moved from bf:
// to prefix.
func aclUsers(t *testing.T, ctx context.Context, c rueidis.Client, run, prefix string) map[string]aclUser {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "kustomize", "base", "valkey", "acl-rules"))
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]aclUser{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		u := aclUser{name: "bfdash" + run + "-" + f[0], password: randomHex(t)}
		args := []string{"ACL", "SETUSER", u.name, "reset", "on", ">" + u.password}
		for _, r := range f[1:] {
			args = append(args, strings.Replace(r, "~bf:", "~"+prefix, 1))
		}
		if err := c.Do(ctx, c.B().Arbitrary(args...).Build()).Error(); err != nil {
			t.Fatalf("ACL SETUSER %s (rules of acl-rules) error: %v", u.name, err)
		}
		users[f[0]] = u
	}
	for _, want := range []string{"aggregator", "reader"} {
		if _, ok := users[want]; !ok {
			t.Fatalf("acl-rules has users %v, want %s", users, want)
		}
	}
	return users
}

func cleanupValkey(t *testing.T, c rueidis.Client, prefix string, users map[string]aclUser) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Logf("cleanup scan: %v", err)
			break
		}
		if len(e.Elements) > 0 {
			_ = c.Do(ctx, c.B().Del().Key(e.Elements...).Build()).Error()
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	for _, u := range users {
		_ = c.Do(ctx, c.B().AclDeluser().Username(u.name).Build()).Error()
	}
}

// variableValues resolves the dashboard's variables: custom ones to their
// values, Redis query ones by running the query (as the reader). Data
// source variables are Resolve's, not values a query uses.
func variableValues(t *testing.T, ctx context.Context, c rueidis.Client, d *dashboard.Dashboard, ds []dashboard.Provisioned, prefix string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "custom":
			out[v.Name] = v.CustomValues()
		case "query":
			src, err := d.Resolve(v.Datasource, ds)
			if err != nil {
				t.Fatalf("%s: variable %s: %v", d.UID, v.Name, err)
			}
			if src.Type != dashboard.PluginID {
				continue
			}
			q := dashboard.Target{Query: v.QueryString()}.Expand(nil, prefix)
			f, cmd, err := dashboard.Run(ctx, c, q, time.Now(), time.Now())
			if err != nil {
				t.Fatalf("variable %s: Run(%q) error: %v", v.Name, cmd, err)
			}
			for _, x := range f.Fields[0].Values {
				out[v.Name] = append(out[v.Name], fmt.Sprint(x))
			}
			if len(out[v.Name]) == 0 {
				t.Fatalf("variable %s: Run(%q) = no values, want some", v.Name, cmd)
			}
		}
	}
	return out
}

// combinations lists every assignment of values to the variables used.
func combinations(vars []string, values map[string][]string) []map[string]string {
	out := []map[string]string{{}}
	for _, name := range vars {
		var next []map[string]string
		for _, c := range out {
			for _, v := range values[name] {
				m := map[string]string{name: v}
				for k, x := range c {
					m[k] = x
				}
				next = append(next, m)
			}
		}
		out = next
	}
	return out
}

// timeRange is the dashboard's default time range ("now-6h" to "now").
func timeRange(t *testing.T, d *dashboard.Dashboard) (time.Time, time.Time) {
	t.Helper()
	now := time.Now()
	from := now.Add(-6 * time.Hour)
	if s, ok := strings.CutPrefix(d.Time.From, "now-"); ok {
		dur, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("dashboard %s: time.from %q: %v", d.UID, d.Time.From, err)
		}
		from = now.Add(-dur)
	}
	return from, now.Add(time.Minute)
}

func randomHex(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// near compares money and ratios computed in floating point.
func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// TestDashboardDatasourceMistakesAreFound seeds one mistake at a time into
// a dashboard (in memory) and checks that DatasourceProblems, or Resolve
// against datasources.yaml, reports it: a fixed uid anywhere keeps the
// dashboard from importing into another Grafana, and a variable whose
// current value or text is wrong breaks import or our provisioning.
func TestDashboardDatasourceMistakesAreFound(t *testing.T) {
	t.Parallel()
	ds := provisioned(t)
	const business, protocols = "business.json", "protocols.json"
	setDS := func(title, field, value string) func(t *testing.T, m map[string]any) {
		return func(t *testing.T, m map[string]any) {
			p := findPanel(t, m, title)
			ref := p["datasource"].(map[string]any)
			if field == "target" {
				ref = p["targets"].([]any)[0].(map[string]any)["datasource"].(map[string]any)
			}
			ref["uid"] = value
		}
	}
	variable := func(m map[string]any, name string) map[string]any {
		for _, v := range m["templating"].(map[string]any)["list"].([]any) {
			if v := v.(map[string]any); v["name"] == name {
				return v
			}
		}
		t.Fatalf("no variable %s", name)
		return nil
	}
	tests := []struct {
		name string
		file string
		seed func(t *testing.T, m map[string]any)
		want []string // all in one message
	}{
		{"target with our Valkey's uid", business, setDS("Price history: $product", "target", "valkey"),
			[]string{`"Price history: $product"`, `.targets[0](A).datasource names data source uid "valkey"`}},
		{"panel with our Prometheus' uid", protocols, setDS("Requests per second by protocol", "panel", "prometheus"),
			[]string{`"Requests per second by protocol"`, `names data source uid "prometheus"`}},
		{"query variable with our Valkey's uid", business, func(t *testing.T, m map[string]any) {
			variable(m, "product")["datasource"].(map[string]any)["uid"] = "valkey"
		}, []string{`("product").datasource names data source uid "valkey"`}},
		{"target naming a data source by name", business, func(t *testing.T, m map[string]any) {
			findPanel(t, m, "Sales reported")["targets"].([]any)[0].(map[string]any)["datasource"] = "Valkey"
		}, []string{`"Sales reported"`, `names data source "Valkey"`}},
		{"variable reference of another plugin", business, func(t *testing.T, m map[string]any) {
			findPanel(t, m, "Revenue")["datasource"].(map[string]any)["type"] = "prometheus"
		}, []string{`"Revenue"`, `has type "prometheus", but variable valkey holds redis-datasource`}},
		{"variable current value fixed, import's answer ignored", business, func(t *testing.T, m map[string]any) {
			variable(m, "valkey")["current"].(map[string]any)["value"] = "valkey"
		}, []string{`variable valkey has current value "valkey", want "${DS_...}"`}},
		{"no __inputs", protocols, func(t *testing.T, m map[string]any) {
			delete(m, "__inputs")
		}, []string{`variable prometheus has current value "${DS_PROMETHEUS}", want "${DS_...}" of an __inputs entry`}},
		{"__inputs of the wrong plugin", business, func(t *testing.T, m map[string]any) {
			m["__inputs"].([]any)[0].(map[string]any)["pluginId"] = "redis-app"
		}, []string{`__inputs DS_VALKEY is a datasource of plugin "redis-app"`}},
		{"__requires without the data source plugin", business, func(t *testing.T, m map[string]any) {
			var keep []any
			for _, r := range m["__requires"].([]any) {
				if r.(map[string]any)["id"] != "redis-datasource" {
					keep = append(keep, r)
				}
			}
			m["__requires"] = keep
		}, []string{`__requires does not list datasource/redis-datasource`}},
		{"variable text not the provisioned name", business, func(t *testing.T, m map[string]any) {
			variable(m, "valkey")["current"].(map[string]any)["text"] = "Redis"
		}, []string{`variable valkey (current value "${DS_VALKEY}", text "Redis") names no provisioned redis-datasource data source`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join(repoRoot(t), "kustomize", "base", "grafana", "dashboards", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			tt.seed(t, m)
			if b, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
			d, err := dashboard.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			got := d.DatasourceProblems()
			for _, p := range d.AllPanels() {
				for _, ref := range []*dashboard.Datasource{p.Datasource} {
					if _, err := d.Resolve(ref, ds); err != nil {
						got = append(got, err.Error())
					}
				}
			}
			i := slices.IndexFunc(got, func(s string) bool {
				for _, w := range tt.want {
					if !strings.Contains(s, w) {
						return false
					}
				}
				return true
			})
			if i < 0 {
				t.Fatalf("problems of %s seeded with %q = %q, want one saying %q", tt.file, tt.name, got, tt.want)
			}
			t.Logf("found: %s", got[i])
		})
	}
}

// findPanel returns the panel titled title, rows' panels included.
func findPanel(t *testing.T, m map[string]any, title string) map[string]any {
	t.Helper()
	var walk func([]any) map[string]any
	walk = func(ps []any) map[string]any {
		for _, p := range ps {
			p := p.(map[string]any)
			if p["title"] == title && p["type"] != "row" {
				return p
			}
			if sub, ok := p["panels"].([]any); ok {
				if found := walk(sub); found != nil {
					return found
				}
			}
		}
		return nil
	}
	p := walk(m["panels"].([]any))
	if p == nil {
		t.Fatalf("no panel titled %q", title)
	}
	return p
}
