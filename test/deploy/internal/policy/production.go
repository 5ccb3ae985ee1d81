package policy

import (
	"path"
	"regexp"
	"strings"

	m "blackfriday.local/test/deploy/internal/manifest"
)

// The rules only production builds follow: dev runs open on purpose.
const (
	RuleWriteAuth = "write-auth"
	RuleCORS      = "cors"
)

// apiImage matches the api's image, wherever the overlay pushes it.
var apiImage = regexp.MustCompile(`(^|/)blackfriday/api([:@]|$)`)

// CheckProduction applies Check and the production rules: the api's writes
// need a bearer token read from a Secret volume, browsers may call it only
// from listed https origins, and Kafka takes only authenticated clients
// over TLS, with authorization on.
func CheckProduction(objs []m.Object) []Violation {
	c := &checker{objs: objs, out: Check(objs)}
	for _, o := range objs {
		if o.Kind() == "Kafka" {
			c.kafkaListeners(o)
		}
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, ctr := range m.List(spec, "containers") {
			if apiImage.MatchString(m.String(ctr, "image")) {
				env := c.containerEnv(o.Namespace(), ctr)
				c.writeAuth(o, spec, ctr, env)
				c.cors(o, env)
			}
		}
	}
	return c.out
}

// writeAuth: WRITE_TOKENS_FILE is a file of a read-only Secret volume, no
// token is in the environment, and the course API's exception is explicit.
func (c *checker) writeAuth(o m.Object, spec map[string]any, ctr any, env map[string]string) {
	name := m.String(ctr, "name")
	for _, x := range m.List(ctr, "env") {
		if m.String(x, "name") == "WRITE_TOKENS" && m.Get(x, "valueFrom") != nil { // literals: below
			c.add(RuleWriteAuth, o, "container %s: WRITE_TOKENS puts tokens in the environment, readable from the pod spec: use WRITE_TOKENS_FILE", name)
		}
	}
	if _, ok := env["WRITE_TOKENS"]; ok {
		c.add(RuleWriteAuth, o, "container %s: WRITE_TOKENS puts tokens in the environment: use WRITE_TOKENS_FILE", name)
	}
	file := env["WRITE_TOKENS_FILE"]
	if file == "" {
		c.add(RuleWriteAuth, o, "container %s: WRITE_TOKENS_FILE is not set: anyone may write (mount the Secret api-write-tokens, docs/security.md)", name)
		return
	}
	if v := env["LEGACY_WRITE_AUTH"]; v != "true" && v != "false" {
		c.add(RuleWriteAuth, o, "container %s: LEGACY_WRITE_AUTH is %q: decide explicitly whether the course's API needs a token (true breaks its clients, false leaves it open)", name, v)
	}
	var mount map[string]any
	for _, x := range m.List(ctr, "volumeMounts") {
		mp := strings.TrimSuffix(m.String(x, "mountPath"), "/")
		if (file == mp || strings.HasPrefix(file, mp+"/")) && len(mp) > len(m.String(mount, "mountPath")) {
			mount, _ = x.(map[string]any)
		}
	}
	if mount == nil {
		c.add(RuleWriteAuth, o, "container %s: WRITE_TOKENS_FILE %s is on no volume: mount the tokens' Secret", name, file)
		return
	}
	if m.Get(mount, "readOnly") != true {
		c.add(RuleWriteAuth, o, "container %s: the tokens' volume %s is mounted writable, want readOnly: true", name, m.String(mount, "name"))
	}
	var secret map[string]any
	for _, v := range m.List(spec, "volumes") {
		if m.String(v, "name") == m.String(mount, "name") {
			secret = m.Map(v, "secret")
		}
	}
	if secret == nil {
		c.add(RuleWriteAuth, o, "container %s: WRITE_TOKENS_FILE %s is on volume %s, which is not a Secret volume", name, file, m.String(mount, "name"))
		return
	}
	if m.Get(secret, "optional") == true {
		c.add(RuleWriteAuth, o, "container %s: the tokens' Secret %s is optional: a missing Secret must stop the pod, not hide the cause", name, m.String(secret, "secretName"))
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(file, strings.TrimSuffix(m.String(mount, "mountPath"), "/")), "/")
	if sub := m.String(mount, "subPath"); sub != "" {
		rel = path.Join(sub, rel)
	}
	if items := m.List(secret, "items"); len(items) > 0 {
		found := false
		for _, it := range items {
			found = found || m.String(it, "path") == rel
		}
		if !found {
			c.add(RuleWriteAuth, o, "container %s: Secret volume %s does not project %s (WRITE_TOKENS_FILE %s)", name, m.String(mount, "name"), rel, file)
		}
	}
}

// cors: an explicit list of https origins, or off; never "*", which is
// also the api's default when the variable is unset.
func (c *checker) cors(o m.Object, env map[string]string) {
	v, ok := env["CORS_ALLOWED_ORIGINS"]
	if !ok {
		c.add(RuleCORS, o, "CORS_ALLOWED_ORIGINS is not set, and the api's default is *: list the origins (or off)")
		return
	}
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return
	}
	for _, origin := range strings.Split(v, ",") {
		origin = strings.TrimSpace(origin)
		switch {
		case strings.Contains(origin, "*"):
			c.add(RuleCORS, o, "CORS_ALLOWED_ORIGINS holds %q: any page on the internet could call the api from a visitor's browser; list the origins", origin)
		case !strings.HasPrefix(origin, "https://"):
			c.add(RuleCORS, o, "CORS_ALLOWED_ORIGINS holds %q: production origins are https://", origin)
		}
	}
}

// kafkaListeners: every client listener authenticates and encrypts, and
// authorization is on (without it every user may do anything).
func (c *checker) kafkaListeners(o m.Object) {
	for _, l := range m.List(o, "spec", "kafka", "listeners") {
		name := m.String(l, "name")
		port, _ := m.Int(l, "port")
		if m.String(l, "authentication", "type") == "" {
			c.add(RuleKafkaAuth, o, "listener %s (port %d) takes clients without authentication", name, port)
		}
		if m.Get(l, "tls") != true {
			c.add(RuleKafkaAuth, o, "listener %s (port %d) is not TLS: passwords and sales cross the network in the clear", name, port)
		}
	}
	if m.String(o, "spec", "kafka", "authorization", "type") == "" {
		c.add(RuleKafkaAuth, o, "authorization is off: every client may read, write and delete every topic")
	}
}
