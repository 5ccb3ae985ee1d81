package capacity

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// after returns the first submatch of re in the file at path, searched
// from the first occurrence of anchor on.
func after(t *testing.T, path, anchor string, re *regexp.Regexp) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, anchor)
	if i < 0 {
		t.Fatalf("%s: no %q", path, anchor)
	}
	m := re.FindStringSubmatch(s[i:])
	if m == nil {
		t.Fatalf("%s: no %v after %q", path, re, anchor)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s: %q after %q: %v", path, m[1], anchor, err)
	}
	return v
}

// TestProdMatchesOverlay checks the limits the plan assumes against the
// files the prod overlay is built from, so that a change there shows here.
func TestProdMatchesOverlay(t *testing.T) {
	t.Parallel()
	cpuLimit := regexp.MustCompile(`limits:\s*\n\s*cpu:\s*"?([0-9.]+)"?`)
	replicas := regexp.MustCompile(`path: /spec/replicas\s*\n\s*value:\s*([0-9]+)`)
	partitions := regexp.MustCompile(`partitions:\s*([0-9]+)`)
	const overlay, resources = "kustomize/overlays/prod/kustomization.yaml", "kustomize/overlays/prod/resources.yaml"
	const replicated = "kustomize/components/kafka-replicated/kustomization.yaml"
	for _, tt := range []struct {
		what       string
		got        float64
		path, from string
		re         *regexp.Regexp
	}{
		{"api pod CPU limit", Prod.APICPU, resources, "- name: api\n", cpuLimit},
		{"aggregator pod CPU limit", Prod.AggregatorCPU, resources, "- name: aggregator\n", cpuLimit},
		{"Kafka node CPU limit", Prod.BrokerCPU, overlay, "name: dual-role", cpuLimit},
		{"Kafka nodes", float64(Prod.MinBrokers), replicated, "kind: KafkaNodePool", replicas},
		{"replication factor", float64(Prod.Replication), replicated, "kind: KafkaTopic", replicas},
		{"sales partitions", float64(Prod.MinPartitions), "kustomize/base/kafka/topics.yaml", "name: sales\n", partitions},
	} {
		if want := after(t, tt.path, tt.from, tt.re); tt.got != want {
			t.Errorf("Prod's %s = %v, but %s declares %v", tt.what, tt.got, tt.path, want)
		}
	}
}
