package e2e

// Least privilege, against real servers: Kafka with SCRAM and the ACLs of
// the prod KafkaUsers, and Valkey with the ACL rules of the deployment.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"sigs.k8s.io/yaml"

	"blackfriday.local/contract/keys"
	launcher "blackfriday.local/tooling/stack"
	"blackfriday.local/tooling/stack/kafka"
	"blackfriday.local/tooling/stack/valkey"
)

// kafkaUser is the part of a Strimzi KafkaUser the test needs.
type kafkaUser struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string `json:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `json:"type"`
					Name        string `json:"name"`
					PatternType string `json:"patternType"`
				} `json:"resource"`
				Operations []string `json:"operations"`
				Type       string   `json:"type"`
				Host       string   `json:"host"`
			} `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

// loadKafkaUsers reads the KafkaUsers of the prod overlay's component.
func loadKafkaUsers(t *testing.T) map[string]kafkaUser {
	t.Helper()
	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "kustomize", "components", "kafka-users", "kafka-users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]kafkaUser{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var u kafkaUser
		if err := yaml.Unmarshal([]byte(doc), &u); err != nil {
			t.Fatalf("kafka-users.yaml: %v", err)
		}
		users[u.Metadata.Name] = u
	}
	for _, name := range []string{"api", "aggregator"} {
		u, ok := users[name]
		if !ok || u.Spec.Authentication.Type != "scram-sha-512" || u.Spec.Authorization.Type != "simple" {
			t.Fatalf("kafka-users.yaml: KafkaUser %s = %+v, want one with scram-sha-512 and simple authorization", name, u)
		}
	}
	return users
}

// createACLs creates a KafkaUser's ACLs on a real broker, renaming the
// production topic and group names to the test's.
func createACLs(ctx context.Context, t *testing.T, adm *kadm.Client, u kafkaUser, rename map[string]string) {
	t.Helper()
	for _, a := range u.Spec.Authorization.ACLs {
		b := kadm.NewACLs()
		principal := "User:" + u.Metadata.Name
		host := a.Host
		if host == "" {
			host = "*"
		}
		if a.Type == "deny" {
			b.Deny(principal).DenyHosts(host)
		} else {
			b.Allow(principal).AllowHosts(host)
		}
		name, ok := rename[a.Resource.Name]
		if !ok && a.Resource.Type != "cluster" {
			t.Fatalf("KafkaUser %s: no test name for %s %q", u.Metadata.Name, a.Resource.Type, a.Resource.Name)
		}
		switch a.Resource.Type {
		case "topic":
			b.Topics(name)
		case "group":
			b.Groups(name)
		case "cluster":
			b.Clusters()
		default:
			t.Fatalf("KafkaUser %s: resource type %q not handled by the test", u.Metadata.Name, a.Resource.Type)
		}
		if a.Resource.PatternType == "prefix" {
			b.ResourcePatternType(kadm.ACLPatternPrefixed)
		} else {
			b.ResourcePatternType(kadm.ACLPatternLiteral)
		}
		var ops []kadm.ACLOperation
		for _, o := range a.Operations {
			op, err := kmsg.ParseACLOperation(o)
			if err != nil {
				t.Fatalf("KafkaUser %s: operation %q: %v", u.Metadata.Name, o, err)
			}
			ops = append(ops, op)
		}
		b.Operations(ops...)
		results, err := adm.CreateACLs(ctx, b)
		if err != nil {
			t.Fatalf("CreateACLs(%s %s %s) = %v", u.Metadata.Name, a.Resource.Type, name, err)
		}
		for _, r := range results {
			if r.Err != nil {
				t.Fatalf("CreateACLs(%s %s %s) = %v", u.Metadata.Name, a.Resource.Type, name, r.Err)
			}
		}
	}
}

// TestKafkaSCRAMAndACLs runs the api and the aggregator against a real
// broker that only lets them in with SCRAM-SHA-512 over TLS, signed by a
// test CA, and enforces the ACLs of the prod KafkaUsers
// (kustomize/components/kafka-users): sales flow end to end and are
// counted exactly. Then it shows what the identities may not do: a wrong
// password is refused, so is a client without TLS or one that does not
// trust the CA, the api cannot read the sales or write the dead letters,
// and the aggregator cannot write sales.
func TestKafkaSCRAMAndACLs(t *testing.T) {
	aggPassword, apiPassword := "agg-"+randomID(), "api-"+randomID()
	k := startKafka(t, kafka.Config{Users: []kafka.User{{Name: "aggregator", Password: aggPassword}, {Name: "api", Password: apiPassword}}, ACL: true, TLS: true})
	sasl := k.SASLBootstrap()
	ctx := context.Background()
	if k.CAFile() == "" {
		t.Fatal("the cluster has no test CA, want its SCRAM listener on TLS")
	}
	caPEM, err := os.ReadFile(k.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", k.CAFile())
	}

	s := newStack(t)
	s.kafka = k.Bootstrap() // the test's own reads use the PLAINTEXT listener, a super user
	s.setEnv("KAFKA_BROKERS", sasl)
	s.setEnv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
	s.setEnv("KAFKA_TLS", "true")
	s.setEnv("KAFKA_TLS_CA_FILE", k.CAFile())
	group := s.topic + "-aggregator"
	rename := map[string]string{"sales": s.topic, "sales.dlq": s.topic + ".dlq", "blackfriday-aggregator": group}

	admin, err := kgo.NewClient(kgo.SeedBrokers(k.Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	// Topics are managed (Strimzi KafkaTopic): neither service may create
	// them.
	if _, err := adm.CreateTopics(ctx, 6, 1, nil, s.topic, s.topic+".dlq"); err != nil {
		t.Fatalf("CreateTopics() = %v", err)
	}
	users := loadKafkaUsers(t)
	for _, u := range users {
		createACLs(ctx, t, adm, u, rename)
	}

	s.startAggregatorEnv("aggregator", "KAFKA_SASL_USERNAME=aggregator", "KAFKA_SASL_PASSWORD="+aggPassword)
	s.startAPI("KAFKA_SASL_USERNAME=api", "KAFKA_SASL_PASSWORD="+apiPassword)
	gen, tr := newSaleGen(808), newTruth()
	var wg sync.WaitGroup
	for _, c := range callers(s) {
		wg.Go(func() {
			for range 100 {
				sale := gen.next()
				callCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := c.record(callCtx, sale)
				cancel()
				if err != nil {
					t.Errorf("RecordSale via %s over SCRAM = %v", c.name, err)
					return
				}
				tr.acked(sale, c.name)
			}
		})
	}
	wg.Wait()
	waitForTruth(ctx, t, s, tr)
	// A poison record makes the aggregator use its write ACL on the
	// dead-letter topic.
	if err := admin.ProduceSync(ctx, &kgo.Record{Topic: s.topic, Value: []byte{0xff}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.totalsField(ctx, keys.FieldDeadLetters) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the aggregator did not dead-letter a poison record within 30s over SCRAM")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if dead := readTopic(ctx, t, k.Bootstrap(), s.topic+".dlq"); len(dead) != 1 {
		t.Errorf("dead-letter topic holds %d records, want 1", len(dead))
	}
	t.Logf("api (KafkaUser api) and aggregator (KafkaUser aggregator) over SCRAM-SHA-512 on TLS with ACLs: %d sales counted exactly, 1 dead letter", tr.count())

	// What the identities may not do.
	dial := func(user, password string, extra ...kgo.Opt) *kgo.Client {
		cl, err := kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(sasl),
			kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()),
			kgo.RetryTimeout(5 * time.Second),
			kgo.RecordDeliveryTimeout(10 * time.Second),
		}, extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	as := func(user, password string, extra ...kgo.Opt) *kgo.Client {
		return dial(user, password, append([]kgo.Opt{kgo.DialTLSConfig(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})}, extra...)...)
	}
	// errRefused stands for any refusal of a connection: the broker
	// closes it, or the client does not trust the broker.
	errRefused := errors.New("refused")
	tests := []struct {
		name string
		try  func(ctx context.Context) error
		want error
	}{
		{"without TLS", func(ctx context.Context) error {
			return dial("aggregator", aggPassword).Ping(ctx)
		}, errRefused},
		{"TLS without trusting the test CA", func(ctx context.Context) error {
			return dial("aggregator", aggPassword, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12})).Ping(ctx)
		}, errRefused},
		{"wrong password", func(ctx context.Context) error {
			return as("aggregator", "guess").Ping(ctx)
		}, kerr.SaslAuthenticationFailed},
		{"unknown user", func(ctx context.Context) error {
			return as("intruder", aggPassword).Ping(ctx)
		}, kerr.SaslAuthenticationFailed},
		{"api writes a sale (allowed)", func(ctx context.Context) error {
			return as("api", apiPassword).ProduceSync(ctx, &kgo.Record{Topic: s.topic, Value: []byte{0xff}}).FirstErr()
		}, nil},
		{"api writes the dead-letter topic", func(ctx context.Context) error {
			return as("api", apiPassword).ProduceSync(ctx, &kgo.Record{Topic: s.topic + ".dlq", Value: []byte("x")}).FirstErr()
		}, kerr.TopicAuthorizationFailed},
		{"api reads the sales", func(ctx context.Context) error {
			return fetchOne(ctx, as("api", apiPassword, kgo.ConsumeTopics(s.topic), kgo.ConsumerGroup(group)))
		}, kerr.GroupAuthorizationFailed},
		{"api creates a topic", func(ctx context.Context) error {
			resp, err := kadm.NewClient(as("api", apiPassword)).CreateTopics(ctx, 1, 1, nil, s.topic+"-other")
			if err != nil {
				return err
			}
			return resp[s.topic+"-other"].Err
		}, kerr.TopicAuthorizationFailed},
		{"aggregator writes a sale", func(ctx context.Context) error {
			return as("aggregator", aggPassword).ProduceSync(ctx, &kgo.Record{Topic: s.topic, Value: []byte("x")}).FirstErr()
		}, kerr.TopicAuthorizationFailed},
		{"aggregator reads with another group", func(ctx context.Context) error {
			return fetchOne(ctx, as("aggregator", aggPassword, kgo.ConsumeTopics(s.topic), kgo.ConsumerGroup("other-group")))
		}, kerr.GroupAuthorizationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			err := tt.try(ctx)
			if tt.want == errRefused {
				if err == nil {
					t.Errorf("%s = %v, want the connection refused", tt.name, err)
				}
				t.Logf("%s: %v", tt.name, err)
				return
			}
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("%s = %v, want %v", tt.name, err, tt.want)
			}
		})
	}
}

// fetchOne polls a consumer group client until it gets a record or an
// error.
func fetchOne(ctx context.Context, cl *kgo.Client) error {
	for {
		fetches := cl.PollRecords(ctx, 1)
		if err := fetches.Err0(); err != nil {
			return err
		}
		if fetches.NumRecords() > 0 {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// TestValkeyACLs loads the deployment's ACL rules (kustomize/base/valkey:
// acl-rules rendered by render-acl.sh, the script the StatefulSet runs) into
// a real server of its own, runs the api as "reader" and the aggregator as
// "aggregator" against it, and shows that: the default user is off; the
// reader cannot write; the aggregator writes only bf:* keys and runs its
// script, but nothing dangerous.
func TestValkeyACLs(t *testing.T) {
	root, err := launcher.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	passwords := map[string]string{}
	render := exec.Command("sh", filepath.Join(root, "kustomize", "base", "valkey", "render-acl.sh"))
	render.Env = append(os.Environ(), "ACL_RULES="+filepath.Join(root, "kustomize", "base", "valkey", "acl-rules"),
		"ACL_FILE="+filepath.Join(dir, "users.acl"))
	for _, u := range []string{"aggregator", "reader", "probe", "admin"} {
		passwords[u] = u + "-" + randomID()
		render.Env = append(render.Env, strings.ToUpper(u)+"_PASSWORD="+passwords[u])
	}
	if out, err := render.CombinedOutput(); err != nil {
		t.Fatalf("render-acl.sh: %v\n%s", err, out)
	}
	v := startValkey(t, valkey.Config{ACLFile: filepath.Join(dir, "users.acl"), AdminUser: "admin", AdminPassword: passwords["admin"]})
	ctx := context.Background()

	login := func(user string) rueidis.Client {
		t.Helper()
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{v.Addr()}, DisableCache: true,
			Username: user, Password: passwords[user]})
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{v.Addr()}, DisableCache: true}); err == nil {
		err = c.Do(ctx, c.B().Ping().Build()).Error()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("PING as the default user = %v, want NOAUTH: the default user must be off", err)
		}
	}
	if c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{v.Addr()}, DisableCache: true,
		Username: "default", Password: ""}); err == nil {
		c.Close()
		t.Errorf("AUTH default with an empty password succeeded, want it refused")
	}

	// The real pipeline under the rules, with the production prefix bf:.
	s := newStack(t)
	s.useValkey(v.Addr())
	s.prefix = keys.DefaultPrefix
	s.setEnv("VALKEY_KEY_PREFIX", keys.DefaultPrefix)
	s.valkeyUser, s.valkeyPassword = "admin", passwords["admin"]
	s.startAggregatorEnv("aggregator", "VALKEY_USERNAME=aggregator", "VALKEY_PASSWORD="+passwords["aggregator"])
	s.startAPI("VALKEY_USERNAME=reader", "VALKEY_PASSWORD="+passwords["reader"])
	gen, tr := newSaleGen(909), newTruth()
	for _, c := range callers(s) {
		for range 50 {
			sale := gen.next()
			if _, err := c.record(ctx, sale); err != nil {
				t.Fatalf("RecordSale via %s = %v", c.name, err)
			}
			tr.acked(sale, c.name)
		}
	}
	waitForTruth(ctx, t, s, tr)
	resp, err := http.Get("http://" + s.aggAddrs["aggregator"] + "/readyz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("aggregator /readyz as ACL user aggregator = %v, %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}

	reader, aggregator, probe := login("reader"), login("aggregator"), login("probe")
	b := reader.B()
	k := keys.New(keys.DefaultPrefix)
	tests := []struct {
		user    string
		c       rueidis.Client
		cmd     rueidis.Completed
		allowed bool
	}{
		{"reader", reader, b.Hgetall().Key(k.Totals()).Build(), true},
		{"reader", reader, b.Zrevrange().Key(k.RankUnits()).Start(0).Stop(9).Build(), true},
		{"reader", reader, b.Set().Key(k.Prefix() + "x").Value("1").Build(), false},
		{"reader", reader, b.Hincrby().Key(k.Totals()).Field(keys.FieldSales).Increment(1).Build(), false},
		{"reader", reader, b.Del().Key(k.Totals()).Build(), false},
		{"reader", reader, b.Eval().Script("return 1").Numkeys(0).Build(), false},
		{"reader", reader, b.Get().Key("other:x").Build(), false},
		{"reader", reader, b.Flushall().Build(), false},
		{"aggregator", aggregator, b.Hincrby().Key(k.Prefix() + "acltest").Field("n").Increment(1).Build(), true},
		{"aggregator", aggregator, b.Eval().Script("return redis.call('HGET', KEYS[1], 'n')").Numkeys(1).Key(k.Prefix() + "acltest").Build(), true},
		{"aggregator", aggregator, b.Eval().Script("return redis.call('SET', KEYS[1], '1')").Numkeys(1).Key("other:x").Build(), false},
		{"aggregator", aggregator, b.Set().Key("other:x").Value("1").Build(), false},
		{"aggregator", aggregator, b.Flushall().Build(), false},
		{"aggregator", aggregator, b.Keys().Pattern("*").Build(), false},
		{"aggregator", aggregator, b.ConfigSet().ParameterValue().ParameterValue("appendonly", "no").Build(), false},
		{"aggregator", aggregator, b.AclSetuser().Username("aggregator").Rule("+@all").Build(), false},
		{"aggregator", aggregator, b.Del().Key(k.Prefix() + "acltest").Build(), true},
		{"probe", probe, b.Ping().Build(), true},
		{"probe", probe, b.Get().Key(k.Totals()).Build(), false},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %s", tt.user, strings.Join(tt.cmd.Commands(), " "))
		err := tt.c.Do(ctx, tt.cmd).Error()
		if rueidis.IsRedisNil(err) {
			err = nil
		}
		switch {
		case tt.allowed && err != nil:
			t.Errorf("%s = %v, want it allowed", name, err)
		case !tt.allowed && (err == nil || !strings.Contains(err.Error(), "NOPERM")):
			t.Errorf("%s = %v, want NOPERM", name, err)
		}
	}
}
