package prodshape_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blackfriday.local/tooling/stack/prodshape"
	"blackfriday.local/tooling/stack/valkey"
)

// runEnv opts in to TestProdShape: it takes about a minute of two cores
// (three Kafka nodes, Valkey, five processes), too long for make test,
// so `make prod-shape-test` runs it on its own.
const runEnv = "BF_TEST_PRODSHAPE"

// needProcesses skips TestProdShape unless asked for (runEnv), and where
// there is no Java or no server to run, except under CI=true, where the
// launcher installs them.
func needProcesses(t *testing.T) {
	t.Helper()
	if testing.Short() || os.Getenv(runEnv) == "" {
		t.Skipf("starts a Kafka cluster, Valkey and five processes for about a minute: %s=1 (make prod-shape-test) runs it", runEnv)
	}
	if os.Getenv("CI") == "true" {
		return
	}
	if _, err := exec.LookPath("java"); err != nil {
		t.Skip("no java on PATH to run Kafka")
	}
	if valkey.InstalledVersion() == "" {
		t.Skip("neither valkey-server nor redis-server is installed")
	}
}

// TestProdShape brings up the prod overlay's shape (three KRaft nodes,
// its topics, Valkey with its ACL users, two api and three aggregator
// processes with their Deployments' settings), records sales through
// each api process and reads them back counted through each, then
// compares the processes with their manifests (Check).
func TestProdShape(t *testing.T) {
	needProcesses(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	sh, err := prodshape.Up(ctx, prodshape.Config{Dir: filepath.Join(t.TempDir(), "stack"), Log: t.Output()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sh.Down(); err != nil {
			t.Error(err)
		}
	})
	up := time.Since(start)
	t.Log(sh.Summary())

	st := sh.State()
	if st.Nodes < 3 {
		t.Errorf("the shape has %d Kafka nodes, want the prod node pool's (3)", st.Nodes)
	}
	for _, topic := range st.Topics {
		if topic.Replicas != st.Nodes || topic.Config["min.insync.replicas"] == "" {
			t.Errorf("topic %s, want replicated on every node with min.insync.replicas set", topic)
		}
	}
	apis, aggregators := sh.Pods("api"), sh.Pods("aggregator")
	if len(apis) != 2 || len(aggregators) != 3 {
		t.Fatalf("the shape runs %d api and %d aggregator processes, want 2 and 3", len(apis), len(aggregators))
	}
	tokens, err := sh.Secret("api-write-tokens", "tokens")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(strings.Split(tokens, "\n")[0])

	// Writes need the bearer token in prod: without it a sale is refused.
	base := func(p prodshape.Pod) string { return "http://" + p.Addr("grpc") }
	sale := `{"sale":{"category":"CATEGORY_HOME","productId":"H%d","priceCents":"%d","quantity":%d}}`
	if code, body := post(ctx, t, base(apis[0])+"/blackfriday.sales.v1.SalesService/RecordSale", "", fmt.Sprintf(sale, 0, 100, 1)); code != http.StatusUnauthorized {
		t.Errorf("RecordSale without a token = %d %s, want 401", code, body)
	}
	var wantSales, wantUnits, wantRevenue int64
	for i, p := range apis {
		for j := range 3 {
			n := int64(i*3 + j + 1)
			code, body := post(ctx, t, base(p)+"/blackfriday.sales.v1.SalesService/RecordSale", token, fmt.Sprintf(sale, n, 100*n, n))
			if code != http.StatusOK {
				t.Fatalf("RecordSale through %s = %d %s, want 200", p.Name, code, body)
			}
			wantSales, wantUnits, wantRevenue = wantSales+1, wantUnits+n, wantRevenue+100*n*n
		}
	}
	type summary struct {
		Sales        int64 `json:"sales,string"`
		Units        int64 `json:"units,string"`
		RevenueCents int64 `json:"revenueCents,string"`
	}
	want := summary{wantSales, wantUnits, wantRevenue}
	for _, p := range apis {
		var got summary
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := post(ctx, t, base(p)+"/blackfriday.sales.v1.AnalyticsService/GetSummary", "", "{}")
			if code != http.StatusOK {
				t.Fatalf("GetSummary through %s = %d %s, want 200", p.Name, code, body)
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("GetSummary through %s: %v: %s", p.Name, err, body)
			}
			if got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if got != want {
			t.Errorf("GetSummary through %s = %+v, want %+v", p.Name, got, want)
		}
	}

	findings, err := sh.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		t.Log(f)
	}
	for _, f := range prodshape.Failed(findings) {
		t.Errorf("the manifests and the processes disagree: %s", f)
	}
	t.Logf("up in %v, whole test %v", up.Round(time.Second), time.Since(start).Round(time.Second))
}

// post sends a Connect JSON request and returns the status and the body.
func post(ctx context.Context, t *testing.T, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}
