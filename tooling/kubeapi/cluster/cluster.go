// Package cluster starts a control plane of one etcd (embedded) and one
// kube-apiserver (a binary built from k8s.io/kubernetes) on loopback, with
// certificates, a token and service-account keys generated for the run. No
// controller, scheduler or kubelet runs: the cluster stores and validates
// objects, which is what a server-side dry-run needs.
package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Options say how to start the cluster.
type Options struct {
	// APIServer is the kube-apiserver binary.
	APIServer string
	// Dir holds etcd's data, the certificates and the kubeconfig; it is
	// created, and emptied first.
	Dir string
	// Log receives kube-apiserver's output (discarded when nil).
	Log io.Writer
	// ReadyTimeout bounds the wait for /readyz (2 minutes when zero).
	ReadyTimeout time.Duration
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Server is the apiserver's URL (https://127.0.0.1:port).
	Server string
	// Token is the bearer token of an administrator (system:masters).
	Token string
	// CAData is the PEM of the CA that signed the serving certificate.
	CAData []byte
	// Kubeconfig is the path of a kubeconfig for Server, CAData and Token.
	Kubeconfig string

	etcd *embed.Etcd
	cmd  *exec.Cmd
	done chan error
}

// Start starts etcd, then kube-apiserver, and returns once /readyz answers
// ok. On error everything it started is stopped.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Minute
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Server: "https://127.0.0.1:" + strconv.Itoa(ports[0])}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	files, err := c.writeCredentials(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if err := c.startEtcd(filepath.Join(o.Dir, "etcd"), ports[1], ports[2]); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	args := []string{
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(ports[1]),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[0]),
		"--tls-cert-file=" + files.servingCert,
		"--tls-private-key-file=" + files.servingKey,
		"--client-ca-file=" + files.ca,
		"--token-auth-file=" + files.tokens,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + files.saKey,
		"--service-account-signing-key-file=" + files.saKey,
		"--api-audiences=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
		// No kubelet or controllers: no endpoints to reconcile for the
		// kubernetes Service, no log or exec to proxy.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--watch-cache=false",
		"--cert-dir=" + filepath.Join(o.Dir, "certs"),
		"--v=0",
	}
	c.cmd = exec.Command(o.APIServer, args...)
	c.cmd.Stdout, c.cmd.Stderr = o.Log, o.Log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	c.done = make(chan error, 1)
	go func() { c.done <- c.cmd.Wait() }()
	if err := c.waitReady(ctx, o.ReadyTimeout); err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(o.Dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.kubeconfig(), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop stops kube-apiserver (SIGTERM, then SIGKILL after 10 s) and etcd.
func (c *Cluster) Stop() {
	if c.cmd != nil && c.cmd.Process != nil && c.done != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
}

// TLSConfig trusts the cluster's CA.
func (c *Cluster) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAData)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (c *Cluster) startEtcd(dir string, clientPort, peerPort int) error {
	cfg := embed.NewConfig()
	cfg.Name = "dry-run"
	cfg.Dir = dir
	cfg.Logger = "zap"
	// Only what stops it: Close logs its closed listeners as errors.
	cfg.LogLevel = "fatal"
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = true // a throwaway store
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(clientPort)}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	c.etcd = e
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return err
	case <-time.After(time.Minute):
		return errors.New("not ready within a minute")
	}
}

func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.TLSConfig()}, Timeout: 5 * time.Second}
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		if resp, err := hc.Do(req); err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case err := <-c.done:
			c.done <- err
			return fmt.Errorf("kube-apiserver exited before ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready within %s: %s", timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type credentialFiles struct{ ca, servingCert, servingKey, tokens, saKey string }

// writeCredentials generates a CA, a serving certificate for 127.0.0.1
// and localhost, an administrator's token and a service-account signing
// key, and writes them under dir.
func (c *Cluster) writeCredentials(dir string) (credentialFiles, error) {
	f := credentialFiles{
		ca:          filepath.Join(dir, "ca.crt"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servingKey:  filepath.Join(dir, "apiserver.key"),
		tokens:      filepath.Join(dir, "tokens.csv"),
		saKey:       filepath.Join(dir, "sa.key"),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dry-run CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	c.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return f, err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		return f, err
	}
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return f, err
	}
	c.Token = hex.EncodeToString(tok)
	for _, w := range []struct {
		path string
		data []byte
	}{
		{f.ca, c.CAData},
		{f.servingCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{f.servingKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})},
		{f.saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER})},
		{f.tokens, []byte(c.Token + `,dry-run-admin,dry-run-admin,"system:masters"` + "\n")},
	} {
		if err := os.WriteFile(w.path, w.data, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (c *Cluster) kubeconfig() []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: dry-run
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: dry-run-admin
  user:
    token: %s
contexts:
- name: dry-run
  context: {cluster: dry-run, user: dry-run-admin}
current-context: dry-run
`, c.Server, base64.StdEncoding.EncodeToString(c.CAData), c.Token)
}

// freePorts asks the kernel for n free loopback ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
