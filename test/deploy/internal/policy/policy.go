// Package policy holds the rules every kustomize build must follow, beyond
// what the schemas say: probes and resources on every container, pinned
// image tags, restricted security contexts, Service and budget selectors
// that select something, autoscalers whose targets exist, an aggregator
// that never outgrows its topic's partitions, KEDA Kafka triggers that can
// log in to the listener they name, and no secret in plain text.
// Production builds follow more rules (CheckProduction).
package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	m "blackfriday.local/test/deploy/internal/manifest"
)

// The rules; a Violation names one.
const (
	RuleProbes           = "probes"
	RuleResources        = "resources"
	RuleImageTag         = "image-tag"
	RuleSecurityContext  = "security-context"
	RuleSelector         = "selector"
	RuleAutoscaler       = "autoscaler"
	RulePartitions       = "partitions"
	RulePlaintextSecret  = "plaintext-secret"
	RuleNamespace        = "namespace"
	RuleKafkaAuth        = "kafka-auth"
	placeholderImageTag  = "set-by-overlay"
	consumerGroupEnvName = "KAFKA_GROUP"
)

// Violation is one broken rule.
type Violation struct {
	Rule    string
	Object  string
	Message string
}

func (v Violation) String() string {
	return fmt.Sprintf("[%s] %s: %s", v.Rule, v.Object, v.Message)
}

// Check applies every rule to the objects of one build.
func Check(objs []m.Object) []Violation {
	c := &checker{objs: objs}
	ns := ""
	for _, o := range objs {
		if o.Kind() == "Namespace" {
			ns = o.Name()
		}
	}
	for _, o := range objs {
		if !clusterScoped[o.Kind()] && o.Namespace() != ns {
			c.add(RuleNamespace, o, "namespace %q, want the build's namespace %q", o.Namespace(), ns)
		}
		if spec := podSpec(o); spec != nil {
			c.pod(o, spec)
		}
		switch o.Kind() {
		case "Service":
			c.service(o)
		case "PodDisruptionBudget":
			c.budget(o)
		case "HorizontalPodAutoscaler", "ScaledObject":
			c.autoscaler(o)
		case "Secret":
			c.add(RulePlaintextSecret, o, "a Secret in the build: create it out of band (make deploy-secrets), never from the repository")
		case "ConfigMap":
			c.configMap(o)
		case "KafkaNodePool":
			if m.Map(o, "spec", "resources", "requests") == nil || m.Map(o, "spec", "resources", "limits") == nil {
				c.add(RuleResources, o, "spec.resources needs requests and limits")
			}
		}
	}
	c.partitions()
	c.kafkaTriggers()
	return c.out
}

// clusterScoped are the kinds without a namespace that builds may hold.
var clusterScoped = map[string]bool{
	"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"CustomResourceDefinition": true, "GatewayClass": true, "StorageClass": true,
	"PriorityClass": true, "IngressClass": true,
}

type checker struct {
	objs []m.Object
	out  []Violation
}

func (c *checker) add(rule string, o m.Object, format string, args ...any) {
	c.out = append(c.out, Violation{Rule: rule, Object: o.ID(), Message: fmt.Sprintf(format, args...)})
}

// podSpec returns the pod spec of a workload, or nil.
func podSpec(o m.Object) map[string]any {
	switch o.Kind() {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		return m.Map(o, "spec", "template", "spec")
	case "CronJob":
		return m.Map(o, "spec", "jobTemplate", "spec", "template", "spec")
	case "Pod":
		return m.Map(o, "spec")
	}
	return nil
}

// longRunning reports whether the workload's pods serve until stopped, and
// so need probes; a Job's run to completion.
func longRunning(o m.Object) bool {
	switch o.Kind() {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Pod":
		return true
	}
	return false
}

func (c *checker) pod(o m.Object, spec map[string]any) {
	podSC := m.Map(spec, "securityContext")
	type ctr struct {
		c       map[string]any
		init    bool
		sidecar bool
	}
	var all []ctr
	for _, x := range m.List(spec, "initContainers") {
		cm, _ := x.(map[string]any)
		all = append(all, ctr{c: cm, init: true, sidecar: m.String(cm, "restartPolicy") == "Always"})
	}
	for _, x := range m.List(spec, "containers") {
		cm, _ := x.(map[string]any)
		all = append(all, ctr{c: cm})
	}
	for _, x := range all {
		name := m.String(x.c, "name")
		if longRunning(o) && (!x.init || x.sidecar) {
			for _, p := range []string{"readinessProbe", "livenessProbe"} {
				if m.Map(x.c, p) == nil {
					c.add(RuleProbes, o, "container %s has no %s", name, p)
				}
			}
		}
		for _, r := range []string{"requests.cpu", "requests.memory", "limits.memory"} {
			k := strings.Split(r, ".")
			if m.Get(x.c, "resources", k[0], k[1]) == nil {
				c.add(RuleResources, o, "container %s has no resources.%s", name, r)
			}
		}
		if msg := imageProblem(m.String(x.c, "image")); msg != "" {
			c.add(RuleImageTag, o, "container %s: %s", name, msg)
		}
		c.security(o, name, podSC, m.Map(x.c, "securityContext"))
		c.env(o, name, x.c)
	}
}

// imageProblem says what is wrong with an image reference, or "".
func imageProblem(image string) string {
	if image == "" {
		return "no image"
	}
	if _, digest, ok := strings.Cut(image, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			return fmt.Sprintf("image %s: bad digest", image)
		}
		return ""
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	switch {
	case !ok || tag == "":
		return fmt.Sprintf("image %s has no tag: pin one (overlay images:)", image)
	case tag == "latest":
		return fmt.Sprintf("image %s uses latest: pin a version", image)
	case tag == placeholderImageTag:
		return fmt.Sprintf("image %s has the base's placeholder tag: the overlay must pin it", image)
	}
	return ""
}

func (c *checker) security(o m.Object, name string, pod, ctr map[string]any) {
	either := func(key string) any {
		if v := m.Get(ctr, key); v != nil {
			return v
		}
		return m.Get(pod, key)
	}
	if either("runAsNonRoot") != true {
		c.add(RuleSecurityContext, o, "container %s: runAsNonRoot is not true", name)
	}
	if uid, ok := m.Int(ctr, "runAsUser"); ok && uid == 0 {
		c.add(RuleSecurityContext, o, "container %s runs as uid 0", name)
	}
	if m.Get(ctr, "allowPrivilegeEscalation") != false {
		c.add(RuleSecurityContext, o, "container %s: allowPrivilegeEscalation is not false", name)
	}
	if m.Get(ctr, "readOnlyRootFilesystem") != true {
		c.add(RuleSecurityContext, o, "container %s: readOnlyRootFilesystem is not true", name)
	}
	if m.Get(ctr, "privileged") == true {
		c.add(RuleSecurityContext, o, "container %s is privileged", name)
	}
	if !slices.Contains(m.List(ctr, "capabilities", "drop"), any("ALL")) {
		c.add(RuleSecurityContext, o, "container %s does not drop ALL capabilities", name)
	}
	if len(m.List(ctr, "capabilities", "add")) > 0 {
		c.add(RuleSecurityContext, o, "container %s adds capabilities", name)
	}
	seccomp := m.String(ctr, "seccompProfile", "type")
	if seccomp == "" {
		seccomp = m.String(pod, "seccompProfile", "type")
	}
	if seccomp != "RuntimeDefault" && seccomp != "Localhost" {
		c.add(RuleSecurityContext, o, "container %s has no RuntimeDefault seccomp profile", name)
	}
}

// secretName matches names that hold secrets.
var secretName = regexp.MustCompile(`(?i)(passw(or)?d|secret|token|api_?key|private_?key|credential)`)

// secretAssignment matches "name: value" and "NAME=value" lines whose
// name holds a secret; a value that starts with "$" is a reference to the
// environment, which is fine.
var secretAssignment = regexp.MustCompile(`(?im)^[ \t-]*["']?([\w.-]*(?:passw(?:or)?d|secret|token|api_?key|private_?key)[\w.-]*)["']?[ \t]*[:=][ \t]*["']?([^\s"'#,]+)`)

func (c *checker) env(o m.Object, name string, ctr map[string]any) {
	for _, x := range m.List(ctr, "env") {
		e, _ := x.(map[string]any)
		if secretName.MatchString(m.String(e, "name")) && m.String(e, "value") != "" {
			c.add(RulePlaintextSecret, o, "container %s: env %s has a literal value: use valueFrom.secretKeyRef", name, m.String(e, "name"))
		}
	}
}

// fileReference reports whether a variable names the file a secret is read
// from (WRITE_TOKENS_FILE=/etc/api-tokens/tokens), not the secret itself.
func fileReference(name, value string) bool {
	return strings.HasSuffix(strings.ToUpper(name), "_FILE") && strings.HasPrefix(value, "/")
}

func (c *checker) configMap(o m.Object) {
	for k, v := range m.Map(o, "data") {
		s, _ := v.(string)
		if secretName.MatchString(k) && !fileReference(k, s) {
			c.add(RulePlaintextSecret, o, "key %s looks like a secret: put it in a Secret created out of band", k)
		}
		for _, sm := range secretAssignment.FindAllStringSubmatch(s, -1) {
			if !strings.HasPrefix(sm[2], "$") {
				c.add(RulePlaintextSecret, o, "%s sets %s to a literal: reference the environment (${VAR}) fed from a Secret", k, sm[1])
			}
		}
	}
}

// template is a pod template of the build, for selector checks.
type template struct {
	owner  m.Object
	labels map[string]any
	spec   map[string]any
}

func (c *checker) templates(ns string) []template {
	var out []template
	for _, o := range c.objs {
		spec := podSpec(o)
		if spec == nil || o.Namespace() != ns {
			continue
		}
		labels := m.Map(o, "spec", "template", "metadata", "labels")
		switch o.Kind() {
		case "Pod":
			labels = m.Map(o, "metadata", "labels")
		case "CronJob":
			labels = m.Map(o, "spec", "jobTemplate", "spec", "template", "metadata", "labels")
		}
		out = append(out, template{owner: o, labels: labels, spec: spec})
	}
	return out
}

func selects(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (c *checker) service(o m.Object) {
	sel := m.Map(o, "spec", "selector")
	if len(sel) == 0 {
		return
	}
	var matched []template
	for _, t := range c.templates(o.Namespace()) {
		if selects(sel, t.labels) {
			matched = append(matched, t)
		}
	}
	if len(matched) == 0 {
		c.add(RuleSelector, o, "selector %v matches no pod template", sel)
		return
	}
	for _, x := range m.List(o, "spec", "ports") {
		p, _ := x.(map[string]any)
		target := m.Get(p, "targetPort")
		if target == nil {
			target = m.Get(p, "port")
		}
		for _, t := range matched {
			if !hasPort(t.spec, target) {
				c.add(RuleSelector, o, "port %v: %s has no container port %v", m.Get(p, "port"), t.owner.ID(), target)
			}
		}
	}
}

func hasPort(spec map[string]any, target any) bool {
	for _, x := range m.List(spec, "containers") {
		for _, y := range m.List(x, "ports") {
			switch t := target.(type) {
			case string:
				if m.String(y, "name") == t {
					return true
				}
			case float64:
				if n, _ := m.Int(y, "containerPort"); n == int64(t) {
					return true
				}
			}
		}
	}
	return false
}

func (c *checker) budget(o m.Object) {
	sel := m.Map(o, "spec", "selector", "matchLabels")
	for _, t := range c.templates(o.Namespace()) {
		if selects(sel, t.labels) {
			return
		}
	}
	c.add(RuleSelector, o, "selector %v matches no pod template", sel)
}

// find returns the object of the build with this kind, name and namespace.
func (c *checker) find(kind, name, ns string) m.Object {
	for _, o := range c.objs {
		if o.Kind() == kind && o.Name() == name && o.Namespace() == ns {
			return o
		}
	}
	return nil
}

// scaler is an autoscaler's view: its target and its maximum.
func scaler(o m.Object) (kind, name string, max int64) {
	ref := m.Map(o, "spec", "scaleTargetRef")
	kind = m.String(ref, "kind")
	if kind == "" {
		kind = "Deployment"
	}
	if o.Kind() == "ScaledObject" {
		max, _ = m.Int(o, "spec", "maxReplicaCount")
		if max == 0 {
			max = 100 // KEDA's default
		}
	} else {
		max, _ = m.Int(o, "spec", "maxReplicas")
	}
	return kind, m.String(ref, "name"), max
}

func (c *checker) autoscaler(o m.Object) {
	kind, name, _ := scaler(o)
	target := c.find(kind, name, o.Namespace())
	if target == nil {
		c.add(RuleAutoscaler, o, "scaleTargetRef %s/%s does not exist in the build", kind, name)
		return
	}
	if m.Get(target, "spec", "replicas") != nil {
		c.add(RuleAutoscaler, target, "sets spec.replicas although %s scales it: remove it", o.ID())
	}
	for _, other := range c.objs {
		if other.Kind() != "HorizontalPodAutoscaler" && other.Kind() != "ScaledObject" {
			continue
		}
		if k, n, _ := scaler(other); other.ID() < o.ID() && k == kind && n == name && other.Namespace() == o.Namespace() {
			c.add(RuleAutoscaler, o, "%s/%s is also scaled by %s", kind, name, other.ID())
		}
	}
	if o.Kind() != "HorizontalPodAutoscaler" {
		return
	}
	cpu := false
	for _, x := range m.List(o, "spec", "metrics") {
		if m.String(x, "resource", "name") == "cpu" && m.Get(x, "resource", "target", "averageUtilization") != nil {
			cpu = true
		}
	}
	if !cpu {
		c.add(RuleAutoscaler, o, "no CPU utilization target")
	}
	if m.Map(o, "spec", "behavior", "scaleDown") == nil {
		c.add(RuleAutoscaler, o, "no scale-down behavior")
	}
}

// containerEnv resolves a container's environment from env values and
// envFrom ConfigMaps of the build.
func (c *checker) containerEnv(ns string, ctr any) map[string]string {
	env := make(map[string]string)
	for _, x := range m.List(ctr, "envFrom") {
		if cm := c.find("ConfigMap", m.String(x, "configMapRef", "name"), ns); cm != nil {
			for k, v := range m.Map(cm, "data") {
				env[k], _ = v.(string)
			}
		}
	}
	for _, x := range m.List(ctr, "env") {
		if v, ok := m.Get(x, "value").(string); ok {
			env[m.String(x, "name")] = v
		}
	}
	return env
}

// partitions checks the consumer group against its topic: no autoscaler
// may run more consumers than the topic has partitions, and every
// KAFKA_TOPIC_PARTITIONS must agree with the KafkaTopic.
func (c *checker) partitions() {
	for _, o := range c.objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, ctr := range m.List(spec, "containers") {
			env := c.containerEnv(o.Namespace(), ctr)
			topicName, ok := env["KAFKA_TOPIC"]
			if !ok {
				continue
			}
			topic := c.topic(topicName, o.Namespace())
			if topic == nil {
				c.add(RulePartitions, o, "KAFKA_TOPIC %s has no KafkaTopic in the build", topicName)
				continue
			}
			parts, _ := m.Int(topic, "spec", "partitions")
			if s, ok := env["KAFKA_TOPIC_PARTITIONS"]; ok && s != strconv.FormatInt(parts, 10) {
				c.add(RulePartitions, o, "KAFKA_TOPIC_PARTITIONS=%s but %s has %d partitions", s, topic.ID(), parts)
			}
			if _, consumer := env[consumerGroupEnvName]; !consumer {
				continue
			}
			for _, a := range c.objs {
				if a.Kind() != "HorizontalPodAutoscaler" && a.Kind() != "ScaledObject" {
					continue
				}
				if kind, name, max := scaler(a); kind == o.Kind() && name == o.Name() && max > parts {
					c.add(RulePartitions, a, "max replicas %d > %d partitions of %s: extra consumers would sit idle", max, parts, topic.ID())
				}
			}
		}
	}
}

func (c *checker) topic(name, ns string) m.Object {
	for _, o := range c.objs {
		if o.Kind() != "KafkaTopic" || o.Namespace() != ns {
			continue
		}
		n := m.String(o, "spec", "topicName")
		if n == "" {
			n = o.Name()
		}
		if n == name {
			return o
		}
	}
	return nil
}
