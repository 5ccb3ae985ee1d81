package prodshape

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// probe runs one probe of pod's container once, as the kubelet would,
// against the pod's local ports, within the probe's timeoutSeconds. It
// returns what it did, for messages, and nil when the probe succeeds.
func probe(ctx context.Context, pod Pod, p *Probe) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.timeout())*time.Second)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		g := p.HTTPGet
		port, ok := pod.Local(g.Port)
		scheme := strings.ToLower(cmpStr(g.Scheme, "HTTP"))
		what := fmt.Sprintf("httpGet %s port %s path %s", strings.ToUpper(scheme), g.Port, g.Path)
		if !ok {
			return what, fmt.Errorf("port %s is not a container port of %s", g.Port, pod.Container)
		}
		url := fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, port, g.Path)
		return what + " (" + url + ")", httpProbe(ctx, url, g.HTTPHeaders)
	case p.GRPC != nil:
		port, ok := pod.Local(PortRef{Number: p.GRPC.Port})
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		what := fmt.Sprintf("grpc port %d service %q", p.GRPC.Port, service)
		if !ok {
			return what, fmt.Errorf("port %d is not a container port of %s", p.GRPC.Port, pod.Container)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		return what + " (h2c " + addr + ")", grpcProbe(ctx, addr, service)
	case p.TCPSocket != nil:
		port, ok := pod.Local(p.TCPSocket.Port)
		what := fmt.Sprintf("tcpSocket port %s", p.TCPSocket.Port)
		if !ok {
			return what, fmt.Errorf("port %s is not a container port of %s", p.TCPSocket.Port, pod.Container)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return what, err
	case p.Exec != nil:
		return "exec " + strings.Join(p.Exec.Command, " "), errNotRun
	}
	return "no handler", errors.New("the probe has no httpGet, grpc, tcpSocket or exec")
}

// errNotRun is a probe that runs a command in the container's image,
// which the local process does not have.
var errNotRun = errors.New("not run locally: it runs a command of the container's image")

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// httpProbe succeeds on a status from 200 to 399, as the kubelet's does;
// like the kubelet, it does not verify an HTTPS certificate.
func httpProbe(ctx context.Context, url string, headers []NameVal) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}

// grpcProbe calls grpc.health.v1.Health/Check over plaintext HTTP/2 with
// prior knowledge, as the kubelet's gRPC probe does, and succeeds when the
// answer is SERVING. The request and the answer are encoded by hand: the
// request's one field is the service name (field 1, a string), the
// answer's the status (field 1, an enum; SERVING is 1).
func grpcProbe(ctx context.Context, addr, service string) error {
	var msg []byte
	if service != "" {
		msg = append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(service)))...)
		msg = append(msg, service...)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(frame))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered HTTP %s", resp.Status)
	}
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	if code != "0" {
		return fmt.Errorf("grpc-status %s: %s", code, cmpStr(resp.Trailer.Get("Grpc-Message"), resp.Header.Get("Grpc-Message")))
	}
	if len(body) < 5 {
		return errors.New("no HealthCheckResponse in the answer")
	}
	status := uint64(0) // UNKNOWN, also when the field is absent
	m := body[5:]
	for len(m) > 0 {
		tag, n := binary.Uvarint(m)
		if n <= 0 {
			return errors.New("a HealthCheckResponse that does not decode")
		}
		m = m[n:]
		if tag != 0x08 {
			return fmt.Errorf("a HealthCheckResponse with an unexpected field (tag %d)", tag)
		}
		v, n := binary.Uvarint(m)
		if n <= 0 {
			return errors.New("a HealthCheckResponse that does not decode")
		}
		status, m = v, m[n:]
	}
	if status != 1 {
		names := map[uint64]string{0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
		return fmt.Errorf("status %s, want SERVING", cmpStr(names[status], strconv.FormatUint(status, 10)))
	}
	return nil
}

// listening returns the TCP ports the process pid listens on, from
// /proc: its socket inodes and the kernel's table of listening sockets.
func listening(pid int) (map[int]bool, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if n, err := strconv.ParseUint(hexPort, 16, 16); err == nil {
				ports[int(n)] = true
			}
		}
		f.Close()
	}
	return ports, nil
}
