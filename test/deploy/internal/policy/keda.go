package policy

import (
	"net"
	"slices"
	"strconv"
	"strings"

	m "blackfriday.local/test/deploy/internal/manifest"
)

// kedaParam is one parameter of a KEDA trigger: a value the build holds
// (trigger metadata, a ConfigMap), or a reference to a key of a Secret,
// created out of band.
type kedaParam struct {
	value  string
	secret string // "name/key" when the value is in a Secret
}

// kafkaTriggers checks every KEDA Kafka trigger against the Kafka of the
// build: it must name a listener that exists, on a name KEDA's operator
// (in its own namespace) can resolve, and bring what that listener asks
// for: SCRAM-SHA-512 credentials of a KafkaUser of the cluster, TLS with the
// cluster's CA. That user may only Describe the trigger's topic and group.
func (c *checker) kafkaTriggers() {
	for _, so := range c.objs {
		if so.Kind() != "ScaledObject" {
			continue
		}
		for i, t := range m.List(so, "spec", "triggers") {
			if typ := m.String(t, "type"); typ == "kafka" || typ == "apache-kafka" {
				c.kafkaTrigger(so, i, t)
			}
		}
	}
}

func (c *checker) kafkaTrigger(so m.Object, i int, trigger any) {
	servers := m.String(trigger, "metadata", "bootstrapServers")
	if servers == "" {
		c.add(RuleKafkaAuth, so, "trigger %d has no literal bootstrapServers to check", i)
		return
	}
	params := c.kedaParams(so, i, trigger)
	if params == nil {
		return
	}
	for _, server := range strings.Split(servers, ",") {
		kafka, listener := c.kafkaListener(so, i, strings.TrimSpace(server))
		if kafka == nil {
			continue
		}
		lname := m.String(listener, "name")
		port, _ := m.Int(listener, "port")
		if peers := m.List(listener, "networkPolicyPeers"); len(peers) > 0 &&
			!slices.ContainsFunc(peers, func(p any) bool { return m.Map(p, "namespaceSelector") != nil }) {
			c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s admits only pods of its namespace (networkPolicyPeers): add KEDA's namespace", i, lname, port, kafka.ID())
		}
		sasl := params["sasl"].value
		switch auth := m.String(listener, "authentication", "type"); auth {
		case "":
			if sasl != "" && sasl != "none" {
				c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s takes no authentication, but the trigger sends sasl %s", i, lname, port, kafka.ID(), sasl)
			}
		case "scram-sha-512":
			c.scramTrigger(so, i, kafka, lname, port, params, trigger)
		default:
			c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s wants authentication %s, which this check does not know", i, lname, port, kafka.ID(), auth)
		}
		tls := m.Get(listener, "tls") == true
		switch {
		case tls && params["tls"].value != "enable":
			c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s speaks TLS: the trigger needs tls: enable", i, lname, port, kafka.ID())
		case !tls && params["tls"].value == "enable":
			c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s does not speak TLS, but the trigger enables it", i, lname, port, kafka.ID())
		}
		if tls {
			if want := kafka.Name() + "-cluster-ca-cert/ca.crt"; params["ca"].secret != want {
				c.add(RuleKafkaAuth, so, "trigger %d: ca is %q, want the cluster CA from Secret %s (the brokers' certificates are signed by it)", i, params["ca"].secret, want)
			}
			if params["unsafeSsl"].value == "true" {
				c.add(RuleKafkaAuth, so, "trigger %d: unsafeSsl skips the brokers' certificate check", i)
			}
		}
	}
}

// kafkaListener finds the Kafka and the listener a bootstrap address names:
// <cluster>-kafka-bootstrap.<namespace>[.svc[.cluster.local]]:<port>. When
// there is none, it reports why and returns nils.
func (c *checker) kafkaListener(so m.Object, i int, server string) (kafka m.Object, listener map[string]any) {
	host, portText, err := net.SplitHostPort(server)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil {
		c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %q is not host:port", i, server)
		return nil, nil
	}
	name, rest, qualified := strings.Cut(host, ".")
	ns, suffix, _ := strings.Cut(rest, ".")
	cluster, isBootstrap := strings.CutSuffix(name, "-kafka-bootstrap")
	switch {
	case !isBootstrap:
		c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %s is not a Strimzi bootstrap Service (<cluster>-kafka-bootstrap)", i, server)
		return nil, nil
	case !qualified:
		c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %s is a short name, which KEDA's operator resolves in its own namespace: use %s.%s.svc:%d", i, server, name, so.Namespace(), port)
		return nil, nil
	case suffix != "" && suffix != "svc" && suffix != "svc.cluster.local":
		c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %s is not <service>.<namespace>.svc", i, server)
		return nil, nil
	}
	kafka = c.find("Kafka", cluster, ns)
	if kafka == nil {
		c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %s names no Kafka %s in namespace %s of the build", i, server, cluster, ns)
		return nil, nil
	}
	var ports []string
	for _, l := range m.List(kafka, "spec", "kafka", "listeners") {
		p, _ := m.Int(l, "port")
		if p == int64(port) {
			lm, _ := l.(map[string]any)
			return kafka, lm
		}
		ports = append(ports, strconv.FormatInt(p, 10))
	}
	c.add(RuleKafkaAuth, so, "trigger %d: bootstrap server %s: %s has no listener on port %d (listeners on %s)", i, server, kafka.ID(), port, strings.Join(ports, ", "))
	return nil, nil
}

// scramTrigger checks a trigger on a SCRAM-SHA-512 listener: it logs in as
// a KafkaUser of the cluster, with the password Strimzi generated for it,
// and that user may do no more than the lag reading needs.
func (c *checker) scramTrigger(so m.Object, i int, kafka m.Object, lname string, port int64, params map[string]kedaParam, trigger any) {
	if sasl := params["sasl"].value; sasl != "scram_sha512" {
		c.add(RuleKafkaAuth, so, "trigger %d: listener %s (port %d) of %s needs SCRAM-SHA-512, the trigger has sasl %q: give it a TriggerAuthentication with sasl scram_sha512, username and password",
			i, lname, port, kafka.ID(), sasl)
		return
	}
	user := params["username"].value
	if user == "" {
		c.add(RuleKafkaAuth, so, "trigger %d: no username the build can check (want one in a ConfigMap of the TriggerAuthentication)", i)
		return
	}
	ku := c.find("KafkaUser", user, kafka.Namespace())
	if ku == nil || m.String(ku, "metadata", "labels", "strimzi.io/cluster") != kafka.Name() ||
		m.String(ku, "spec", "authentication", "type") != "scram-sha-512" {
		c.add(RuleKafkaAuth, so, "trigger %d: username %s is no scram-sha-512 KafkaUser of %s in the build", i, user, kafka.ID())
		return
	}
	if want := user + "/password"; params["password"].secret != want {
		c.add(RuleKafkaAuth, so, "trigger %d: password from %q, want Secret %s (the User Operator's)", i, params["password"].secret, want)
	}
	topic := m.String(trigger, "metadata", "topic")
	group := m.String(trigger, "metadata", "consumerGroup")
	if m.String(ku, "spec", "authorization", "type") != "simple" {
		c.add(RuleKafkaAuth, ku, "the lag reader of %s has no ACLs (authorization simple): it may do anything", so.ID())
		return
	}
	for _, acl := range m.List(ku, "spec", "authorization", "acls") {
		if m.String(acl, "type") == "deny" {
			continue // takes rights away
		}
		rtype, rname := m.String(acl, "resource", "type"), m.String(acl, "resource", "name")
		allowed := rtype == "topic" && rname == topic || rtype == "group" && rname == group
		if m.String(acl, "resource", "patternType") == "prefix" {
			allowed = false
		}
		for _, op := range m.List(acl, "operations") {
			if !allowed || op != "Describe" {
				c.add(RuleKafkaAuth, ku, "may %v on %s %s: the lag reader of %s needs only Describe on topic %s and group %s", op, rtype, rname, so.ID(), topic, group)
			}
		}
	}
}

// kedaParams gathers a trigger's parameters: its metadata, then its
// TriggerAuthentication (ConfigMap values and Secret references). When the
// TriggerAuthentication is not in the build, it reports that and returns nil.
func (c *checker) kedaParams(so m.Object, i int, trigger any) map[string]kedaParam {
	params := make(map[string]kedaParam)
	metadata := m.Map(trigger, "metadata")
	for k, v := range metadata {
		if !authOnly[k] {
			s, _ := v.(string)
			params[k] = kedaParam{value: s}
		}
	}
	ref := m.Map(trigger, "authenticationRef")
	if ref == nil {
		return params
	}
	kind, name, ns := m.String(ref, "kind"), m.String(ref, "name"), so.Namespace()
	if kind == "" {
		kind = "TriggerAuthentication"
	}
	if kind == "ClusterTriggerAuthentication" {
		ns = ""
	}
	ta := c.find(kind, name, ns)
	if ta == nil {
		c.add(RuleKafkaAuth, so, "trigger %d: authenticationRef %s/%s is not in the build", i, kind, name)
		return nil
	}
	// The scaler reads sasl and tls from the metadata first, the rest only
	// from here.
	set := func(k string, p kedaParam) {
		if _, inMetadata := metadata[k]; !inMetadata || authOnly[k] {
			params[k] = p
		}
	}
	for _, x := range m.List(ta, "spec", "configMapTargetRef") {
		cmName, key := m.String(x, "name"), m.String(x, "key")
		cm := c.find("ConfigMap", cmName, ta.Namespace())
		v, ok := m.Get(cm, "data", key).(string)
		if cm == nil || !ok {
			c.add(RuleKafkaAuth, ta, "parameter %s: ConfigMap %s has no key %s in the build", m.String(x, "parameter"), cmName, key)
			continue
		}
		set(m.String(x, "parameter"), kedaParam{value: v})
	}
	for _, x := range m.List(ta, "spec", "secretTargetRef") {
		set(m.String(x, "parameter"), kedaParam{secret: m.String(x, "name") + "/" + m.String(x, "key")})
	}
	return params
}

// authOnly are the Kafka scaler's parameters it takes from a
// TriggerAuthentication only, never from the trigger's metadata.
var authOnly = map[string]bool{"username": true, "password": true, "ca": true, "cert": true, "key": true, "keyPassword": true}
