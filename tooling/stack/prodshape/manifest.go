package prodshape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Render runs the repository's pinned kustomize on kustomize/overlays/NAME
// and returns the rendered YAML stream. kustomize is the one deploy.mk
// installs into .bin (make deploy-tools, which pins its version and does
// nothing when it is there already), so that the launcher reads exactly
// what `make deploy-build` and `make deploy-apply` read.
func Render(ctx context.Context, root, overlay string, log io.Writer) ([]byte, error) {
	if log == nil {
		log = io.Discard
	}
	tools := exec.CommandContext(ctx, "make", "--no-print-directory", "-s", "-C", root, "deploy-tools")
	if out, err := tools.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("make deploy-tools (the pinned kustomize): %w\n%s", err, out)
	}
	dir := filepath.Join(root, "kustomize", "overlays", overlay)
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		return nil, fmt.Errorf("no overlay %q: %w", overlay, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, ".bin", "kustomize"), "build", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w\n%s", dir, err, stderr.Bytes())
	}
	fmt.Fprintf(log, "prodshape: rendered kustomize/overlays/%s with %s\n", overlay, filepath.Join(root, ".bin", "kustomize"))
	return stdout.Bytes(), nil
}

// Manifest is what the launcher takes from a rendered overlay: the
// objects that describe processes it can run on one machine, decoded
// into the fields it reads. Everything else in the build (Gateway routes,
// network policies, Grafana, Prometheus) is not run locally.
type Manifest struct {
	Kafkas       []Kafka
	NodePools    []NodePool
	Topics       []Topic
	KafkaUsers   []KafkaUser
	Deployments  []Workload
	StatefulSets []Workload
	Services     []Service
	ConfigMaps   []ConfigMap
	HPAs         []HPA
}

// Meta is an object's metadata.
type Meta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

// Kafka is a Strimzi Kafka resource.
type Kafka struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		Kafka struct {
			Listeners []struct {
				Name           string `yaml:"name"`
				Port           int    `yaml:"port"`
				Type           string `yaml:"type"`
				TLS            bool   `yaml:"tls"`
				Authentication *struct {
					Type string `yaml:"type"`
				} `yaml:"authentication"`
			} `yaml:"listeners"`
			Config        map[string]any `yaml:"config"`
			Authorization *struct {
				Type string `yaml:"type"`
			} `yaml:"authorization"`
		} `yaml:"kafka"`
	} `yaml:"spec"`
}

// NodePool is a Strimzi KafkaNodePool.
type NodePool struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		Replicas   int            `yaml:"replicas"`
		Roles      []string       `yaml:"roles"`
		JVMOptions map[string]any `yaml:"jvmOptions"`
	} `yaml:"spec"`
}

// Topic is a Strimzi KafkaTopic.
type Topic struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		TopicName  string         `yaml:"topicName"`
		Partitions int32          `yaml:"partitions"`
		Replicas   int16          `yaml:"replicas"`
		Config     map[string]any `yaml:"config"`
	} `yaml:"spec"`
}

// Name is the topic's name in Kafka: spec.topicName, else the resource's.
func (t Topic) Name() string {
	if t.Spec.TopicName != "" {
		return t.Spec.TopicName
	}
	return t.Metadata.Name
}

// KafkaUser is a Strimzi KafkaUser: a SCRAM identity and its ACLs.
type KafkaUser struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		Authentication *struct {
			Type string `yaml:"type"`
		} `yaml:"authentication"`
		Authorization *struct {
			Type string `yaml:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `yaml:"type"`
					Name        string `yaml:"name"`
					PatternType string `yaml:"patternType"`
				} `yaml:"resource"`
				Operations []string `yaml:"operations"`
				Type       string   `yaml:"type"`
				Host       string   `yaml:"host"`
			} `yaml:"acls"`
		} `yaml:"authorization"`
	} `yaml:"spec"`
}

// Workload is a Deployment or a StatefulSet.
type Workload struct {
	Kind     string `yaml:"kind"`
	Metadata Meta   `yaml:"metadata"`
	Spec     struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Metadata Meta    `yaml:"metadata"`
			Spec     PodSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// PodSpec is the part of a pod template the launcher reads.
type PodSpec struct {
	ServiceAccountName string `yaml:"serviceAccountName"`
	// TerminationGracePeriodSeconds is the time between SIGTERM and
	// SIGKILL; nil means Kubernetes' default, 30 seconds.
	TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []Container `yaml:"initContainers"`
	Containers                    []Container `yaml:"containers"`
	Volumes                       []Volume    `yaml:"volumes"`
}

// Container is a container of a pod template.
type Container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	EnvFrom []struct {
		Prefix       string `yaml:"prefix"`
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env            []EnvVar      `yaml:"env"`
	VolumeMounts   []VolumeMount `yaml:"volumeMounts"`
	StartupProbe   *Probe        `yaml:"startupProbe"`
	ReadinessProbe *Probe        `yaml:"readinessProbe"`
	LivenessProbe  *Probe        `yaml:"livenessProbe"`
}

// EnvVar is one entry of a container's env.
type EnvVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef    *KeyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef *KeyRef `yaml:"configMapKeyRef"`
		FieldRef        *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

// KeyRef names a key of a Secret or a ConfigMap.
type KeyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

// VolumeMount is where a container sees a volume.
type VolumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

// Volume is a pod's volume; only Secret and ConfigMap volumes are given
// local contents.
type Volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

// Probe is a container's startup, readiness or liveness probe.
type Probe struct {
	HTTPGet *struct {
		Path        string    `yaml:"path"`
		Port        PortRef   `yaml:"port"`
		Host        string    `yaml:"host"`
		Scheme      string    `yaml:"scheme"`
		HTTPHeaders []NameVal `yaml:"httpHeaders"`
	} `yaml:"httpGet"`
	GRPC *struct {
		Port    int     `yaml:"port"`
		Service *string `yaml:"service"`
	} `yaml:"grpc"`
	TCPSocket *struct {
		Port PortRef `yaml:"port"`
	} `yaml:"tcpSocket"`
	Exec *struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

// NameVal is a name and a value, as in httpHeaders.
type NameVal struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// timeout is the probe's timeout, Kubernetes' default (1s) when unset.
func (p *Probe) timeout() int { return cmpOr(p.TimeoutSeconds, 1) }

// period is the probe's period, Kubernetes' default (10s) when unset.
func (p *Probe) period() int { return cmpOr(p.PeriodSeconds, 10) }

// failures is the probe's failure threshold, Kubernetes' default (3)
// when unset.
func (p *Probe) failures() int { return cmpOr(p.FailureThreshold, 3) }

func cmpOr(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// PortRef is a port by number or by the name of a container port, as in
// probes and Service targetPorts (Kubernetes' IntOrString).
type PortRef struct {
	Number int
	Name   string
}

// UnmarshalYAML reads a number or a name.
func (p *PortRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a port is a number or a name", n.Line)
	}
	if v, err := strconv.Atoi(n.Value); err == nil {
		p.Number = v
		return nil
	}
	p.Name = n.Value
	return nil
}

func (p PortRef) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(p.Number)
}

// Service is a Kubernetes Service.
type Service struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		ClusterIP string            `yaml:"clusterIP"`
		Selector  map[string]string `yaml:"selector"`
		Ports     []struct {
			Name        string  `yaml:"name"`
			Port        int     `yaml:"port"`
			TargetPort  PortRef `yaml:"targetPort"`
			AppProtocol string  `yaml:"appProtocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// ConfigMap is a ConfigMap, with its generated name (kustomize's hash
// suffix included, as the workloads reference it).
type ConfigMap struct {
	Metadata Meta              `yaml:"metadata"`
	Data     map[string]string `yaml:"data"`
}

// HPA is a HorizontalPodAutoscaler.
type HPA struct {
	Metadata Meta `yaml:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicas int `yaml:"minReplicas"`
		MaxReplicas int `yaml:"maxReplicas"`
	} `yaml:"spec"`
}

// Parse decodes a rendered YAML stream.
func Parse(b []byte) (*Manifest, error) {
	m := &Manifest{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("rendered manifests: %w", err)
		}
		var head struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
		}
		if err := doc.Decode(&head); err != nil {
			return nil, err
		}
		group, _, _ := strings.Cut(head.APIVersion, "/")
		var into any
		switch {
		case head.Kind == "Kafka" && group == "kafka.strimzi.io":
			m.Kafkas = append(m.Kafkas, Kafka{})
			into = &m.Kafkas[len(m.Kafkas)-1]
		case head.Kind == "KafkaNodePool" && group == "kafka.strimzi.io":
			m.NodePools = append(m.NodePools, NodePool{})
			into = &m.NodePools[len(m.NodePools)-1]
		case head.Kind == "KafkaTopic" && group == "kafka.strimzi.io":
			m.Topics = append(m.Topics, Topic{})
			into = &m.Topics[len(m.Topics)-1]
		case head.Kind == "KafkaUser" && group == "kafka.strimzi.io":
			m.KafkaUsers = append(m.KafkaUsers, KafkaUser{})
			into = &m.KafkaUsers[len(m.KafkaUsers)-1]
		case head.Kind == "Deployment":
			m.Deployments = append(m.Deployments, Workload{})
			into = &m.Deployments[len(m.Deployments)-1]
		case head.Kind == "StatefulSet":
			m.StatefulSets = append(m.StatefulSets, Workload{})
			into = &m.StatefulSets[len(m.StatefulSets)-1]
		case head.Kind == "Service":
			m.Services = append(m.Services, Service{})
			into = &m.Services[len(m.Services)-1]
		case head.Kind == "ConfigMap":
			m.ConfigMaps = append(m.ConfigMaps, ConfigMap{})
			into = &m.ConfigMaps[len(m.ConfigMaps)-1]
		case head.Kind == "HorizontalPodAutoscaler":
			m.HPAs = append(m.HPAs, HPA{})
			into = &m.HPAs[len(m.HPAs)-1]
		default:
			continue
		}
		if err := doc.Decode(into); err != nil {
			return nil, fmt.Errorf("rendered %s: %w", head.Kind, err)
		}
	}
	return m, nil
}

// Deployment returns the Deployment named name.
func (m *Manifest) Deployment(name string) (Workload, bool) { return find(m.Deployments, name) }

// StatefulSet returns the StatefulSet named name.
func (m *Manifest) StatefulSet(name string) (Workload, bool) { return find(m.StatefulSets, name) }

func find(ws []Workload, name string) (Workload, bool) {
	for _, w := range ws {
		if w.Metadata.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// ConfigMap returns the data of the ConfigMap named name.
func (m *Manifest) ConfigMap(name string) (map[string]string, bool) {
	for _, c := range m.ConfigMaps {
		if c.Metadata.Name == name {
			return c.Data, true
		}
	}
	return nil, false
}

// HPAFor returns the autoscaler of the Deployment named name.
func (m *Manifest) HPAFor(name string) (HPA, bool) {
	for _, h := range m.HPAs {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
			return h, true
		}
	}
	return HPA{}, false
}

// KafkaNodes is the number of the Kafka cluster's broker nodes: the
// replicas of its node pools that have the broker role.
func (m *Manifest) KafkaNodes() int {
	n := 0
	for _, p := range m.NodePools {
		for _, r := range p.Spec.Roles {
			if r == "broker" {
				n += p.Spec.Replicas
				break
			}
		}
	}
	return n
}

// configString renders a config value as Kafka takes it.
func configString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
