package deploy_test

import (
	"slices"
	"testing"

	m "blackfriday.local/test/deploy/internal/manifest"
)

// TestJaegerComponent checks components/jaeger as staging builds it, network
// policies on: the api and the aggregator export to the jaeger Service's
// OTLP/HTTP port, their egress allows it, and Jaeger's ingress takes it.
func TestJaegerComponent(t *testing.T) {
	t.Parallel()
	objs := build(t, tree(t), variant(t, "staging-jaeger"))
	find := func(kind, name string) m.Object {
		t.Helper()
		i := slices.IndexFunc(objs, func(o m.Object) bool { return o.Kind() == kind && o.Name() == name })
		if i < 0 {
			t.Fatalf("staging-jaeger has no %s/%s", kind, name)
		}
		return objs[i]
	}
	svc := find("Service", "jaeger")
	var ports []int64
	for _, p := range m.List(svc, "spec", "ports") {
		n, _ := m.Int(p, "port")
		ports = append(ports, n)
	}
	if !slices.Equal(ports, []int64{4317, 4318, 16686}) {
		t.Errorf("Service/jaeger ports = %v, want OTLP 4317 and 4318 and the UI 16686", ports)
	}
	find("Deployment", "jaeger")
	// Egress to jaeger:4318, and ingress from the service's pods to it.
	allows := func(rules []any, peerKey string, name string, port int64) bool {
		for _, r := range rules {
			peer := slices.ContainsFunc(m.List(r, peerKey), func(p any) bool {
				return m.String(p, "podSelector", "matchLabels", "app.kubernetes.io/name") == name
			})
			open := slices.ContainsFunc(m.List(r, "ports"), func(p any) bool { n, _ := m.Int(p, "port"); return n == port })
			if peer && open {
				return true
			}
		}
		return false
	}
	jaegerPolicy := find("NetworkPolicy", "jaeger")
	for _, service := range []string{"api", "aggregator"} {
		d := find("Deployment", service)
		env := map[string]string{}
		for _, c := range m.List(d, "spec", "template", "spec", "containers") {
			if m.String(c, "name") == service {
				for _, e := range m.List(c, "env") {
					env[m.String(e, "name")] = m.String(e, "value")
				}
			}
		}
		want := map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318",
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("Deployment/%s: %s = %q, want %q", service, k, env[k], v)
			}
		}
		if !allows(m.List(find("NetworkPolicy", service), "spec", "egress"), "to", "jaeger", 4318) {
			t.Errorf("NetworkPolicy/%s does not let the %s reach jaeger:4318", service, service)
		}
		if !allows(m.List(jaegerPolicy, "spec", "ingress"), "from", service, 4318) {
			t.Errorf("NetworkPolicy/jaeger does not take spans from the %s", service)
		}
	}
	t.Logf("staging-jaeger: %d objects", len(objs))
}
