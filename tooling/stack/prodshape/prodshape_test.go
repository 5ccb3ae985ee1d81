package prodshape

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"blackfriday.local/tooling/stack"
)

func TestExpand(t *testing.T) {
	t.Parallel()
	defined := map[string]string{"A": "1", "MEM": "3gb"}
	tests := []struct{ in, want string }{
		{"$(MEM)", "3gb"},
		{"--maxmemory=$(MEM)", "--maxmemory=3gb"},
		{"$(A)$(A)", "11"},
		{"$(UNSET)", "$(UNSET)"},
		{"$$(A)", "$(A)"},
		{"$", "$"},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		if got := expand(tt.in, defined); got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBinaryOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ image, want string }{
		{"blackfriday/api:0.1.0", "api"},
		{"blackfriday/aggregator", "aggregator"},
		{"localhost:5000/blackfriday/api:0.1.0", "api"},
		{"blackfriday/api@sha256:abc", "api"},
		{"blackfriday/loadgen:0.1.0", ""},
		{"grafana/grafana:12.3.1", ""},
		{"prom/prometheus:v3.7.3", ""},
	}
	for _, tt := range tests {
		if got := binaryOf(tt.image, stack.Binaries); got != tt.want {
			t.Errorf("binaryOf(%q) = %q, want %q", tt.image, got, tt.want)
		}
	}
}

func TestBrokerConfig(t *testing.T) {
	t.Parallel()
	var k Kafka
	k.Spec.Kafka.Config = map[string]any{
		"min.insync.replicas": 2, "auto.create.topics.enable": false, "listeners": "x", "ssl.protocol": "TLSv1.3",
	}
	props, skipped := BrokerConfig(k)
	if want := []string{"auto.create.topics.enable=false", "min.insync.replicas=2"}; !slices.Equal(props, want) {
		t.Errorf("BrokerConfig() props = %q, want %q", props, want)
	}
	if want := []string{"listeners", "ssl.protocol"}; !slices.Equal(skipped, want) {
		t.Errorf("BrokerConfig() skipped = %q, want %q", skipped, want)
	}
}

func TestListening(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ports, err := listening(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !ports[port] {
		t.Errorf("listening(self) = %v, want it to hold %d", ports, port)
	}
}

// TestPlanProd renders the prod overlay and makes its pods without
// starting anything: every setting of the Deployments' ConfigMaps reaches
// the process, made local where it names a Service, a port of the
// container or a mounted file, and prod's Kafka security is left off.
func TestPlanProd(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the overlay with the pinned kustomize")
	}
	ctx := context.Background()
	root, err := stack.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Render(ctx, root, "prod", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Kafkas) != 1 {
		t.Fatalf("Parse(prod) has %d Kafka resources, want 1", len(m.Kafkas))
	}
	dir := t.TempDir()
	sh := &Shape{cfg: Config{Dir: dir, Overlay: "prod", Replicas: map[string]int{}}}
	sh.st.Kafka = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
	sec := secrets{dir: filepath.Join(stateDir(dir), "secrets")}
	vpod, vcfg, err := sh.valkey(ctx, m, sec)
	if err != nil {
		t.Fatal(err)
	}
	vpod.Ports[0].Local = 16379
	sh.st.Pods = []Pod{*vpod}

	// Valkey: the ACL file holds each user's password hash, and the
	// launcher's user may do everything.
	acl, err := os.ReadFile(vcfg.ACLFile)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := sec.get("valkey-users", "reader-password")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(reader))
	if !strings.Contains(string(acl), "user reader on #"+hex.EncodeToString(sum[:])) {
		t.Errorf("the ACL file has no reader with its password's hash:\n%s", acl)
	}
	if vcfg.AdminUser == "" || vcfg.AdminPassword == "" {
		t.Errorf("valkey() AdminUser = %q (password set: %v), want a user with +@all", vcfg.AdminUser, vcfg.AdminPassword != "")
	}

	// With SCRAM over TLS (the default) the processes keep their SASL and
	// TLS settings, reach the SCRAM listeners and trust the local CA;
	// plain, they lose them all.
	ca := "-----BEGIN CERTIFICATE-----\nlocal test CA\n-----END CERTIFICATE-----\n"
	if err := sec.put(m.Kafkas[0].Metadata.Name+"-cluster-ca-cert", "ca.crt", ca); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []bool{false, true} {
		sh.st.KafkaSASL, sh.st.KafkaCA = "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094", "/local/ca.crt"
		want := sh.st.KafkaSASL
		dropped := regexp.MustCompile(`^$`)
		if plain {
			sh.st.KafkaSASL, sh.st.KafkaCA, want, dropped = "", "", sh.st.Kafka, securityEnv
		}
		for _, p := range planPods(t, sh, m, sec, want, dropped) {
			if plain {
				continue
			}
			if p.env["KAFKA_TLS"] != "true" {
				t.Errorf("%s: KAFKA_TLS = %q, want the manifest's true", p.name, p.env["KAFKA_TLS"])
			}
			if b, err := os.ReadFile(p.env["KAFKA_TLS_CA_FILE"]); err != nil || string(b) != ca {
				t.Errorf("%s: KAFKA_TLS_CA_FILE=%s holds %q (%v), want the local CA", p.name, p.env["KAFKA_TLS_CA_FILE"], b, err)
			}
		}
	}
}

// planPods plans the prod overlay's pods and holds each one's env to its
// Deployment's: the local brokers are want, dropped the settings left off.
func planPods(t *testing.T, sh *Shape, m *Manifest, sec secrets, want string, dropped *regexp.Regexp) []plannedEnv {
	t.Helper()
	sh.st.Missing = nil
	plan, err := sh.plan(m, m.Kafkas[0], sec)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plan {
		names = append(names, p.pod.Name)
	}
	if want := []string{"aggregator-0", "aggregator-1", "aggregator-2", "api-0", "api-1"}; !slices.Equal(names, want) {
		t.Fatalf("plan() pods = %q, want %q", names, want)
	}
	var out []plannedEnv
	for _, p := range plan {
		env := map[string]string{}
		for _, kv := range p.env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		for k := range env {
			if dropped.MatchString(k) {
				t.Errorf("%s: %s is set, want it left off", p.pod.Name, k)
			}
		}
		if got := env["KAFKA_BROKERS"]; got != want {
			t.Errorf("%s: KAFKA_BROKERS = %q, want the local cluster's %q", p.pod.Name, got, want)
		}
		if dropped != securityEnv {
			user := env["KAFKA_SASL_USERNAME"]
			if pw, err := sec.get(user, "password"); err != nil || user == "" || env["KAFKA_SASL_PASSWORD"] != pw {
				t.Errorf("%s: KAFKA_SASL_PASSWORD is not the local password of KafkaUser %q", p.pod.Name, user)
			}
		}
		if got, want := env["VALKEY_ADDR"], "127.0.0.1:16379"; got != want {
			t.Errorf("%s: VALKEY_ADDR = %q, want %q", p.pod.Name, got, want)
		}
		user := env["VALKEY_USERNAME"]
		if pw, err := sec.get("valkey-users", user+"-password"); err != nil || env["VALKEY_PASSWORD"] != pw {
			t.Errorf("%s: VALKEY_PASSWORD is not the local password of %s", p.pod.Name, user)
		}
		// The ConfigMap's other settings reach the process unchanged.
		data, _ := m.ConfigMap(p.c.EnvFrom[0].ConfigMapRef.Name)
		for k, v := range data {
			if _, local := map[string]bool{"KAFKA_BROKERS": true, "KAFKA_TLS_CA_FILE": true, "VALKEY_ADDR": true, "PORT": true, "METRICS_ADDR": true, "HTTP_ADDR": true, "WRITE_TOKENS_FILE": true}[k]; local || dropped.MatchString(k) {
				continue
			}
			if env[k] != v {
				t.Errorf("%s: %s = %q, want the manifest's %q", p.pod.Name, k, env[k], v)
			}
		}
		switch p.pod.Workload {
		case "api":
			if got, want := env["PORT"], strconv.Itoa(p.pod.Ports[0].Local); got != want {
				t.Errorf("%s: PORT = %q, want its local port %s", p.pod.Name, got, want)
			}
			if got, want := env["METRICS_ADDR"], p.pod.Addr("metrics"); got != want {
				t.Errorf("%s: METRICS_ADDR = %q, want %q", p.pod.Name, got, want)
			}
			tokens, err := os.ReadFile(env["WRITE_TOKENS_FILE"])
			want, _ := sec.get("api-write-tokens", "tokens")
			if err != nil || string(tokens) != want {
				t.Errorf("%s: WRITE_TOKENS_FILE %s holds %q (%v), want the local token", p.pod.Name, env["WRITE_TOKENS_FILE"], tokens, err)
			}
		case "aggregator":
			if got, want := env["HTTP_ADDR"], p.pod.Addr("http"); got != want {
				t.Errorf("%s: HTTP_ADDR = %q, want %q", p.pod.Name, got, want)
			}
		}
		out = append(out, plannedEnv{p.pod.Name, env})
	}
	return out
}

// plannedEnv is a planned pod's environment.
type plannedEnv struct {
	name string
	env  map[string]string
}

// TestResolveField holds the downward API and variable expansion to what
// the kubelet gives a pod: KAFKA_INSTANCE_ID from metadata.name is each
// replica's own name.
func TestResolveField(t *testing.T) {
	t.Parallel()
	m, err := Parse([]byte(`
apiVersion: v1
kind: ConfigMap
metadata: {name: env-abc, namespace: ns}
data: {GROUP: g1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: aggregator, namespace: ns}
spec:
  template:
    metadata: {labels: {app: aggregator}}
    spec:
      containers:
        - name: aggregator
          image: blackfriday/aggregator:1
          env:
            - name: KAFKA_INSTANCE_ID
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
            - name: NS
              valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
            - name: GROUP
              valueFrom: {configMapKeyRef: {name: env-abc, key: GROUP}}
            - name: CLIENT_ID
              value: $(GROUP)-$(KAFKA_INSTANCE_ID)
`))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := m.Deployment("aggregator")
	for _, name := range []string{"aggregator-0", "aggregator-2"} {
		pod := &Pod{Name: name, Workload: "aggregator"}
		e := &podEnv{m: m, w: w, c: w.Spec.Template.Spec.Containers[0], pod: pod, ns: "ns", secrets: secrets{dir: t.TempDir()}}
		env, err := e.resolve()
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"KAFKA_INSTANCE_ID=" + name, "NS=ns", "GROUP=g1", "CLIENT_ID=g1-" + name}
		if !slices.Equal(env, want) {
			t.Errorf("resolve() for %s = %q, want %q", name, env, want)
		}
	}
}
