package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testCA is a throwaway certificate authority and a server certificate it
// signed for 127.0.0.1 and "kafka.test".
type testCA struct {
	caFile string
	server tls.Certificate
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "blackfriday test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kafka.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames: []string{"kafka.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{caFile: caFile, server: tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}
}

// TestKafkaSecurityOptions connects to a fake Kafka that requires TLS and
// SCRAM-SHA-512, with the options built from the environment: only the
// right password over a verified TLS connection gets in.
func TestKafkaSecurityOptions(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "aggregator", "s3cret"),
		kfake.Superuser("PLAIN", "plainuser", "plainpass"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Not defer: the parallel subtests run after this function returns.
	t.Cleanup(cluster.Close)
	addrs := strings.Join(cluster.ListenAddrs(), ",")
	otherCA := newTestCA(t)

	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{name: "SCRAM-SHA-512 over TLS", env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.caFile,
		}},
		{name: "PLAIN over TLS, server name set", env: map[string]string{
			"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "plainuser", "KAFKA_SASL_PASSWORD": "plainpass",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.caFile, "KAFKA_TLS_SERVER_NAME": "kafka.test",
		}},
		{name: "wrong password", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "guess",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.caFile,
		}},
		{name: "wrong mechanism for the user", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.caFile,
		}},
		{name: "untrusted server certificate", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": otherCA.caFile,
		}},
		{name: "wrong server name", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.caFile, "KAFKA_TLS_SERVER_NAME": "evil.test",
		}},
		{name: "no TLS", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KAFKA_BROKERS": addrs}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := loadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatalf("loadConfig() = %v", err)
			}
			opts, err := c.Kafka.options()
			if err != nil {
				t.Fatalf("options() = %v", err)
			}
			cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(c.Brokers...), kgo.RetryTimeout(time.Second))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = cl.Ping(ctx)
			if (err != nil) != tt.wantErr {
				t.Errorf("Ping() with %s = %v, want error %v", tt.name, err, tt.wantErr)
			}
		})
	}
}

func TestKafkaSecurityOptionsBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    kafkaSecurity
		want string
	}{
		{"missing CA", kafkaSecurity{TLS: true, TLSCAFile: filepath.Join(dir, "none")}, "KAFKA_TLS_CA_FILE"},
		{"CA not PEM", kafkaSecurity{TLS: true, TLSCAFile: notPEM}, "no PEM certificate"},
		{"bad key pair", kafkaSecurity{TLS: true, TLSCertFile: notPEM, TLSKeyFile: notPEM}, "KAFKA_TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		if _, err := tt.s.options(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("options(%s) = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
	if !(kafkaSecurity{SASLMechanism: "PLAIN"}).plaintextPassword() || (kafkaSecurity{SASLMechanism: "PLAIN", TLS: true}).plaintextPassword() {
		t.Errorf("plaintextPassword() is wrong about PLAIN with and without TLS")
	}
}
