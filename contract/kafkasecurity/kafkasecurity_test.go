package kafkasecurity

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/kafkasecurity/kafkasecuritytest"
)

// fromMap returns Load's readers over env: str trims and applies the
// default, lookup takes the value as it is.
func fromMap(env map[string]string) (str func(name, def string) string, lookup func(string) (string, bool)) {
	str = func(name, def string) string {
		if v := strings.TrimSpace(env[name]); v != "" {
			return v
		}
		return def
	}
	lookup = func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
	return str, lookup
}

func TestLoad(t *testing.T) {
	t.Parallel()
	c, errs := Load(fromMap(map[string]string{
		"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": " pass word ",
		"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": "/ca.crt", "KAFKA_TLS_SERVER_NAME": "kafka.example",
	}))
	want := Config{
		SASLMechanism: MechanismScramSHA512, SASLUsername: "api", SASLPassword: " pass word ",
		TLS: true, TLSCAFile: "/ca.crt", TLSServerName: "kafka.example",
	}
	if len(errs) > 0 || c != want {
		t.Errorf("Load() = %+v, %v; want %+v, no errors", c, errs, want)
	}
	if c, errs := Load(fromMap(nil)); len(errs) > 0 || c != (Config{}) {
		t.Errorf("Load() of nothing = %+v, %v; want the zero Config", c, errs)
	}

	mistakes := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM"},
		{map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_PASSWORD"},
		{map[string]string{"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM is not"},
		{map[string]string{"KAFKA_TLS": "yes please"}, "KAFKA_TLS"},
		{map[string]string{"KAFKA_TLS_CA_FILE": "/ca.crt"}, "KAFKA_TLS is not true"},
		{map[string]string{"KAFKA_TLS": "true", "KAFKA_TLS_CERT_FILE": "/c.crt"}, "go together"},
	}
	for _, m := range mistakes {
		_, errs := Load(fromMap(m.env))
		if len(errs) == 0 || !strings.Contains(errors.Join(errs...).Error(), m.want) {
			t.Errorf("Load(%v) = %v, want an error about %s", m.env, errs, m.want)
		}
	}
}

// TestOptions connects to a fake Kafka that requires TLS and
// SCRAM-SHA-512, with the options built from the environment: only the
// right password over a verified TLS connection gets in.
func TestOptions(t *testing.T) {
	t.Parallel()
	ca := kafkasecuritytest.NewCA(t)
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "aggregator", "s3cret"),
		kfake.Superuser("PLAIN", "plainuser", "plainpass"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{ca.Server}, MinVersion: tls.VersionTLS12}),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Not defer: the parallel subtests run after this function returns.
	t.Cleanup(cluster.Close)
	otherCA := kafkasecuritytest.NewCA(t)

	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{name: "SCRAM-SHA-512 over TLS", env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File,
		}},
		{name: "PLAIN over TLS, server name set", env: map[string]string{
			"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "plainuser", "KAFKA_SASL_PASSWORD": "plainpass",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File, "KAFKA_TLS_SERVER_NAME": "kafka.test",
		}},
		{name: "wrong password", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "guess",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File,
		}},
		{name: "wrong mechanism for the user", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File,
		}},
		{name: "untrusted server certificate", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": otherCA.File,
		}},
		{name: "wrong server name", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
			"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": ca.File, "KAFKA_TLS_SERVER_NAME": "evil.test",
		}},
		{name: "no TLS", wantErr: true, env: map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "aggregator", "KAFKA_SASL_PASSWORD": "s3cret",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, errs := Load(fromMap(tt.env))
			if len(errs) > 0 {
				t.Fatalf("Load() = %v", errs)
			}
			opts, err := c.Options()
			if err != nil {
				t.Fatalf("Options() = %v", err)
			}
			cl, err := kgo.NewClient(append(opts, kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RetryTimeout(time.Second))...)
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

func TestOptionsBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Config
		want string
	}{
		{"missing CA", Config{TLS: true, TLSCAFile: filepath.Join(dir, "none")}, "KAFKA_TLS_CA_FILE"},
		{"CA not PEM", Config{TLS: true, TLSCAFile: notPEM}, "no PEM certificate"},
		{"bad key pair", Config{TLS: true, TLSCertFile: notPEM, TLSKeyFile: notPEM}, "KAFKA_TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		if _, err := tt.s.Options(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Options(%s) = %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
	if !(Config{SASLMechanism: "PLAIN"}).PlaintextPassword() || (Config{SASLMechanism: "PLAIN", TLS: true}).PlaintextPassword() {
		t.Errorf("PlaintextPassword() is wrong about PLAIN with and without TLS")
	}
}
