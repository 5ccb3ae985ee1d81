package prodshape

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Pod is one local process standing for one replica of a workload of the
// manifest: the real binary, with the env its pod would have.
type Pod struct {
	// Name is the pod's name: the workload's and the replica's index,
	// "api-0", as a StatefulSet names its pods (a Deployment's pods have
	// random suffixes; locally a replica keeps its name across restarts).
	Name      string `json:"name"`
	Workload  string `json:"workload"`
	Kind      string `json:"kind"`
	Container string `json:"container"`
	// Ports maps each container port to the local port the process
	// listens on instead: the replicas share one network here.
	Ports []Port `json:"ports"`
	// GracePeriod is the pod's terminationGracePeriodSeconds: how long
	// Down waits after SIGTERM before SIGKILL.
	GracePeriod int `json:"grace_period,omitempty"`
	// PidFile is where the process's pid is kept.
	PidFile string `json:"pid_file"`
	// Log is the process's output.
	Log string `json:"log,omitempty"`
	// Stack is set for a pod the stack launcher runs (Valkey), which
	// stops with the stack.
	Stack bool `json:"stack,omitempty"`
	// Notes say how the pod's settings were made local: a Service name
	// mapped to a local address, a port moved, a setting left off.
	Notes []string `json:"notes,omitempty"`
}

// Port is a container port and the local port that stands for it.
type Port struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int    `json:"container_port"`
	Local         int    `json:"local"`
}

// Local returns the local port of the container port named or numbered
// by ref, and whether the container declares it.
func (p Pod) Local(ref PortRef) (int, bool) {
	for _, x := range p.Ports {
		if (ref.Name != "" && x.Name == ref.Name) || (ref.Name == "" && x.ContainerPort == ref.Number) {
			return x.Local, true
		}
	}
	return 0, false
}

// Addr is the local address of the container port named name ("grpc",
// "http"), or "" when there is none.
func (p Pod) Addr(name string) string {
	if n, ok := p.Local(PortRef{Name: name}); ok {
		return "127.0.0.1:" + strconv.Itoa(n)
	}
	return ""
}

// The settings of prod's Kafka security that the local cluster cannot
// honour, left off: TLS when its SCRAM listener has none (the manifest's
// has none either), SASL too when the shape runs without SCRAM
// (Config.PlainKafka).
var (
	tlsEnv      = regexp.MustCompile(`^KAFKA_TLS(_.*)?$`)
	securityEnv = regexp.MustCompile(`^KAFKA_(SASL|TLS)(_.*)?$`)
)

// secrets holds the local values of the Secrets a manifest references
// but does not contain (they are created out of band): random, made once
// and kept in a directory, one file per key, for the whole shape.
type secrets struct{ dir string }

// put sets the value of key in Secret name, for a Secret made from
// something the shape made (Strimzi's cluster CA certificate).
func (s secrets) put(name, key, val string) error {
	path := filepath.Join(s.dir, name, key)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(val), 0o600)
}

// get returns the value of key in Secret name, making it at the first
// call. Keys named "tokens" hold one bearer token (one a line, as the api
// reads its file); every other key a random password.
func (s secrets) get(name, key string) (string, error) {
	path := filepath.Join(s.dir, name, key)
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	v := base64.RawURLEncoding.EncodeToString(b)
	if key == "tokens" {
		v += "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return v, os.WriteFile(path, []byte(v), 0o600)
}

// podEnv is what resolving a container's env needs.
type podEnv struct {
	m        *Manifest
	w        Workload
	c        Container
	pod      *Pod
	ns       string
	secrets  secrets
	services map[string]string // "host:port" in the cluster -> local address(es)
	volumes  string            // the pod's directory of volumes
	// drop matches the settings left off (tlsEnv or securityEnv); nil
	// keeps every one.
	drop *regexp.Regexp
}

// resolve returns the container's environment as NAME=VALUE, in the
// order Kubernetes builds it (envFrom, then env, later entries winning),
// made local: Service addresses mapped, the container's own ports moved
// to the pod's local ports, mounted files moved to local copies, and
// prod's Kafka security left off.
func (e *podEnv) resolve() ([]string, error) {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, from := range e.c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := e.m.ConfigMap(from.ConfigMapRef.Name)
			if !ok {
				return nil, fmt.Errorf("%s: envFrom ConfigMap %s is not in the build", e.pod.Name, from.ConfigMapRef.Name)
			}
			for _, k := range sortedKeys(data) {
				set(from.Prefix+k, data[k])
			}
		case from.SecretRef != nil:
			return nil, fmt.Errorf("%s: envFrom Secret %s: its keys are not known here, so no local values can be made", e.pod.Name, from.SecretRef.Name)
		}
	}
	for _, v := range e.c.Env {
		val, err := e.value(v, vals)
		if err != nil {
			return nil, err
		}
		set(v.Name, val)
	}
	var env []string
	for _, k := range order {
		v := vals[k]
		if e.drop != nil && e.drop.MatchString(k) {
			e.note("%s left off: %s", k, e.dropWhy())
			continue
		}
		nv, err := e.local(k, v)
		if err != nil {
			return nil, err
		}
		env = append(env, k+"="+nv)
	}
	return env, nil
}

// value resolves one env entry.
func (e *podEnv) value(v EnvVar, defined map[string]string) (string, error) {
	if v.ValueFrom == nil {
		return expand(v.Value, defined), nil
	}
	switch f := v.ValueFrom; {
	case f.SecretKeyRef != nil:
		if e.drop != nil && e.drop.MatchString(v.Name) {
			return "", nil // left off below; its Secret is not made
		}
		return e.secrets.get(f.SecretKeyRef.Name, f.SecretKeyRef.Key)
	case f.ConfigMapKeyRef != nil:
		data, _ := e.m.ConfigMap(f.ConfigMapKeyRef.Name)
		val, ok := data[f.ConfigMapKeyRef.Key]
		if !ok && !f.ConfigMapKeyRef.Optional {
			return "", fmt.Errorf("%s: %s from ConfigMap %s key %s, which the build does not have", e.pod.Name, v.Name, f.ConfigMapKeyRef.Name, f.ConfigMapKeyRef.Key)
		}
		return val, nil
	case f.FieldRef != nil:
		return e.field(f.FieldRef.FieldPath)
	}
	return "", fmt.Errorf("%s: %s: a valueFrom the launcher does not know", e.pod.Name, v.Name)
}

// field is the downward API: the pod's own fields.
func (e *podEnv) field(path string) (string, error) {
	switch {
	case path == "metadata.name":
		return e.pod.Name, nil
	case path == "metadata.namespace":
		return e.ns, nil
	case path == "status.podIP", path == "status.hostIP":
		return "127.0.0.1", nil
	case path == "spec.nodeName":
		return os.Hostname()
	case path == "spec.serviceAccountName":
		return e.w.Spec.Template.Spec.ServiceAccountName, nil
	case strings.HasPrefix(path, "metadata.labels['"):
		return e.w.Spec.Template.Metadata.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")], nil
	}
	return "", fmt.Errorf("%s: fieldRef %s is not known to the launcher", e.pod.Name, path)
}

// expand replaces $(NAME) by NAME's value, as Kubernetes does for the
// variables defined before; $$ escapes.
func expand(s string, defined map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '$' && i+1 < len(s) {
			if s[i+1] == '$' {
				b.WriteByte('$')
				i++
				continue
			}
			if s[i+1] == '(' {
				if end := strings.IndexByte(s[i:], ')'); end > 0 {
					if v, ok := defined[s[i+2:i+end]]; ok {
						b.WriteString(v)
						i += end
						continue
					}
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var hostPort = regexp.MustCompile(`^(?:([a-zA-Z0-9.-]*)):(\d+)$`)

// local makes one value local:
//   - a bare port or ":port" that is one of the container's ports becomes
//     its local port (the replicas share this machine's network);
//   - "name:port" naming a Service of the cluster (name, name.ns,
//     name.ns.svc, name.ns.svc.cluster.local) becomes the local address
//     that stands for it, in each element of a comma-separated list;
//   - a path under a volume's mount path becomes the path of the local
//     copy of that volume.
func (e *podEnv) local(name, v string) (string, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if l, ok := e.pod.Local(PortRef{Number: n}); ok {
			e.note("%s=%s: container port %d is local port %d", name, v, n, l)
			return strconv.Itoa(l), nil
		}
		return v, nil
	}
	if m := hostPort.FindStringSubmatch(v); m != nil && (m[1] == "" || m[1] == "0.0.0.0") {
		n, _ := strconv.Atoi(m[2])
		if l, ok := e.pod.Local(PortRef{Number: n}); ok {
			nv := "127.0.0.1:" + strconv.Itoa(l)
			e.note("%s=%s: container port %d is %s", name, v, n, nv)
			return nv, nil
		}
	}
	parts := strings.Split(v, ",")
	changed := false
	for i, p := range parts {
		if addr, ok := e.services[strings.TrimSpace(p)]; ok {
			parts[i], changed = addr, true
		}
	}
	if changed {
		nv := strings.Join(parts, ",")
		e.note("%s=%s: the Service is %s here", name, v, nv)
		return nv, nil
	}
	if strings.HasPrefix(v, "/") {
		return e.mounted(name, v)
	}
	return v, nil
}

// mounted moves a path under a volume mount to the local copy of the
// volume, made now: a Secret volume gets the local values of its items, a
// ConfigMap volume the build's data.
func (e *podEnv) mounted(name, path string) (string, error) {
	for _, vm := range e.c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		dir := filepath.Join(e.volumes, vm.Name)
		if err := e.volume(vm.Name, dir); err != nil {
			return "", err
		}
		local := filepath.Join(dir, rel)
		e.note("%s=%s: volume %s is %s here", name, path, vm.Name, dir)
		return local, nil
	}
	return path, nil
}

// volume writes the local copy of the pod's volume name into dir.
func (e *podEnv) volume(name, dir string) error {
	i := slices.IndexFunc(e.w.Spec.Template.Spec.Volumes, func(v Volume) bool { return v.Name == name })
	if i < 0 {
		return fmt.Errorf("%s: volume %s is mounted but not declared", e.pod.Name, name)
	}
	v := e.w.Spec.Template.Spec.Volumes[i]
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	switch {
	case v.Secret != nil:
		if len(v.Secret.Items) == 0 {
			return fmt.Errorf("%s: Secret volume %s lists no items, so no local keys can be made", e.pod.Name, name)
		}
		for _, it := range v.Secret.Items {
			val, err := e.secrets.get(v.Secret.SecretName, it.Key)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(val), 0o600); err != nil {
				return err
			}
		}
		return nil
	case v.ConfigMap != nil:
		data, ok := e.m.ConfigMap(v.ConfigMap.Name)
		if !ok {
			return fmt.Errorf("%s: ConfigMap volume %s: %s is not in the build", e.pod.Name, name, v.ConfigMap.Name)
		}
		for k, val := range data {
			if err := os.WriteFile(filepath.Join(dir, k), []byte(val), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	return nil // an emptyDir: the directory itself
}

func (e *podEnv) dropWhy() string {
	if e.drop == securityEnv {
		return "the local Kafka runs without SCRAM and TLS (PlainKafka)"
	}
	return "the local Kafka's SCRAM listener has no TLS"
}

func (e *podEnv) note(format string, args ...any) {
	e.pod.Notes = append(e.pod.Notes, fmt.Sprintf(format, args...))
}

// serviceNames returns every name a client in namespace ns may use for
// Service svc with port.
func serviceNames(svc, ns string, port int) []string {
	p := ":" + strconv.Itoa(port)
	return []string{svc + p, svc + "." + ns + p, svc + "." + ns + ".svc" + p, svc + "." + ns + ".svc.cluster.local" + p}
}

// binaryOf returns the name of the repository binary a container's image
// runs ("blackfriday/api:0.1.0" runs api), or "" for a third-party image.
func binaryOf(image string, binaries []string) string {
	name := image
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	if !strings.HasPrefix(name, "blackfriday/") && !strings.Contains(name, "/blackfriday/") {
		return ""
	}
	base := name[strings.LastIndexByte(name, '/')+1:]
	if slices.Contains(binaries, base) {
		return base
	}
	return ""
}
