package prodshape

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"blackfriday.local/tooling/stack/process"
)

// Finding is one comparison of the manifest with a running process.
type Finding struct {
	Pod string
	// Subject is what was compared: "readinessProbe", "containerPort
	// grpc 8080", "Service api targetPort metrics".
	Subject string
	// OK is whether the process does what the manifest declares;
	// Skipped, that the comparison cannot be made locally.
	OK, Skipped bool
	Detail      string
}

func (f Finding) String() string {
	state := "ok  "
	switch {
	case f.Skipped:
		state = "skip"
	case !f.OK:
		state = "FAIL"
	}
	return fmt.Sprintf("%s %-13s %-40s %s", state, f.Pod, f.Subject, f.Detail)
}

// Failed returns the findings that are neither OK nor skipped.
func Failed(fs []Finding) []Finding {
	var out []Finding
	for _, f := range fs {
		if !f.OK && !f.Skipped {
			out = append(out, f)
		}
	}
	return out
}

// Check compares the running processes with the manifests they were made
// from:
//   - every startup, readiness and liveness probe of each pod's container
//     answers as declared (httpGet: a status from 200 to 399 at its path,
//     port and scheme; grpc: SERVING from grpc.health.v1.Health; tcpSocket:
//     a connection), once, within its timeoutSeconds;
//   - every containerPort is a port the process listens on (its local
//     stand-in), and the process listens on no port the container does
//     not declare;
//   - every port of every Service that selects the pod has a targetPort
//     that is one of the container's ports, and the process listens on it.
//
// Exec probes run a command of the container's image and are reported as
// skipped.
func (sh *Shape) Check(ctx context.Context) ([]Finding, error) {
	m, err := sh.Manifest()
	if err != nil {
		return nil, err
	}
	var out []Finding
	for _, pod := range sh.st.Pods {
		w, ok := m.Deployment(pod.Workload)
		if pod.Kind == "StatefulSet" {
			w, ok = m.StatefulSet(pod.Workload)
		}
		if !ok {
			return nil, fmt.Errorf("prodshape: %s %s is not in the rendered manifests", pod.Kind, pod.Workload)
		}
		i := slices.IndexFunc(w.Spec.Template.Spec.Containers, func(c Container) bool { return c.Name == pod.Container })
		if i < 0 {
			return nil, fmt.Errorf("prodshape: %s has no container %s", pod.Workload, pod.Container)
		}
		out = append(out, checkPod(ctx, m, w, w.Spec.Template.Spec.Containers[i], pod)...)
	}
	return out, nil
}

func checkPod(ctx context.Context, m *Manifest, w Workload, c Container, pod Pod) []Finding {
	var out []Finding
	add := func(subject string, err error, detail string) {
		f := Finding{Pod: pod.Name, Subject: subject, OK: err == nil, Detail: detail}
		if errors.Is(err, errNotRun) || errors.Is(err, errUnchecked) {
			f.Skipped = true
		}
		if err != nil {
			f.Detail = strings.TrimSpace(detail + ": " + err.Error())
		}
		out = append(out, f)
	}
	pid := process.PidFile(pod.PidFile).Pid()
	if pid == 0 {
		add("process", errors.New("not running"), pod.PidFile)
		return out
	}
	for _, p := range []struct {
		kind  string
		probe *Probe
	}{{"startupProbe", c.StartupProbe}, {"readinessProbe", c.ReadinessProbe}, {"livenessProbe", c.LivenessProbe}} {
		if p.probe == nil {
			continue
		}
		what, err := probe(ctx, pod, p.probe)
		add(p.kind, err, what)
	}
	ports, err := listening(pid)
	if err != nil {
		add("listening ports", err, fmt.Sprintf("/proc/%d", pid))
		return out
	}
	declared := map[int]bool{}
	for _, p := range pod.Ports {
		declared[p.Local] = true
		subject := fmt.Sprintf("containerPort %s %d", p.Name, p.ContainerPort)
		var err error
		if !ports[p.Local] {
			err = errors.New("the process does not listen on it")
		}
		add(subject, err, fmt.Sprintf("local 127.0.0.1:%d", p.Local))
	}
	var extra []string
	for _, n := range slices.Sorted(maps.Keys(ports)) {
		if !declared[n] {
			extra = append(extra, strconv.Itoa(n))
		}
	}
	if len(extra) > 0 {
		add("undeclared ports", fmt.Errorf("the process also listens on %s, which the container does not declare", strings.Join(extra, ", ")), "")
	}
	for _, s := range m.Services {
		if !selects(s.Spec.Selector, w.Spec.Template.Metadata.Labels) {
			continue
		}
		for _, sp := range s.Spec.Ports {
			subject := fmt.Sprintf("Service %s port %d targetPort %s", s.Metadata.Name, sp.Port, sp.TargetPort)
			l, ok := pod.Local(sp.TargetPort)
			switch {
			case !ok:
				add(subject, fmt.Errorf("container %s declares no such port", c.Name), "")
			case !ports[l]:
				add(subject, errors.New("the process does not listen on it"), fmt.Sprintf("local 127.0.0.1:%d", l))
			default:
				add(subject, nil, fmt.Sprintf("local 127.0.0.1:%d", l))
				if sp.AppProtocol != "" {
					what, err := speaks(ctx, sp.AppProtocol, fmt.Sprintf("127.0.0.1:%d", l))
					add(fmt.Sprintf("Service %s port %d appProtocol %s", s.Metadata.Name, sp.Port, sp.AppProtocol), err, what)
				}
			}
		}
	}
	return out
}

// errUnchecked is an appProtocol the check does not speak.
var errUnchecked = errors.New("no local check for this protocol")

// speaks checks that the process on addr speaks a Service port's
// appProtocol: HTTP/1.1 for http, HTTP/2 with prior knowledge for
// kubernetes.io/h2c (what the Gateway sends), any answer to GET /.
// Other protocols are skipped.
func speaks(ctx context.Context, appProtocol, addr string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true}
	p := new(http.Protocols)
	want := 1
	switch appProtocol {
	case "http":
		p.SetHTTP1(true)
	case "kubernetes.io/h2c":
		p.SetUnencryptedHTTP2(true)
		want = 2
	default:
		return "", errUnchecked
	}
	tr.Protocols = p
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "GET / over HTTP/" + strconv.Itoa(want), err
	}
	resp.Body.Close()
	what := fmt.Sprintf("GET / over HTTP/%d: %s %s", want, resp.Proto, resp.Status)
	if resp.ProtoMajor != want {
		return what, fmt.Errorf("answered over %s", resp.Proto)
	}
	return what, nil
}
