// Package kafkasecurity reads how a service authenticates to Kafka and
// encrypts the connection (SASL PLAIN or SCRAM, and TLS, each optional) from
// the KAFKA_SASL_* and KAFKA_TLS* variables, and turns it into franz-go
// options. The api and the aggregator both use it, so they read the same
// variables the same way.
package kafkasecurity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// The SASL mechanisms KAFKA_SASL_MECHANISM accepts.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
)

// Config is how a client authenticates to Kafka and encrypts the
// connection: SASL (PLAIN or SCRAM) and TLS, each optional. The zero Config
// is plaintext without SASL.
type Config struct {
	// SASLMechanism is empty (no SASL), PLAIN, SCRAM-SHA-256 or
	// SCRAM-SHA-512.
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	// TLS turns TLS on. Without a CA file the system roots verify the
	// brokers.
	TLS           bool
	TLSCAFile     string
	TLSCertFile   string
	TLSKeyFile    string
	TLSServerName string
}

// Load reads the KAFKA_SASL_* and KAFKA_TLS* variables through
// str (which trims and applies defaults) and reports every mistake. The
// password is taken as is, through lookup: spaces may be part of it.
func Load(str func(name, def string) string, lookup func(string) (string, bool)) (Config, []error) {
	var errs []error
	password, _ := lookup("KAFKA_SASL_PASSWORD")
	s := Config{
		SASLMechanism: strings.ToUpper(str("KAFKA_SASL_MECHANISM", "")),
		SASLUsername:  str("KAFKA_SASL_USERNAME", ""),
		SASLPassword:  password,
		TLSCAFile:     str("KAFKA_TLS_CA_FILE", ""),
		TLSCertFile:   str("KAFKA_TLS_CERT_FILE", ""),
		TLSKeyFile:    str("KAFKA_TLS_KEY_FILE", ""),
		TLSServerName: str("KAFKA_TLS_SERVER_NAME", ""),
	}
	switch s.SASLMechanism {
	case "":
		if s.SASLUsername != "" || s.SASLPassword != "" {
			errs = append(errs, errors.New("KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but KAFKA_SASL_MECHANISM is not: set it to SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"))
		}
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if s.SASLUsername == "" || s.SASLPassword == "" {
			errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%s needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", s.SASLMechanism))
		}
	default:
		errs = append(errs, fmt.Errorf("KAFKA_SASL_MECHANISM=%q: want SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", s.SASLMechanism))
	}
	if v := str("KAFKA_TLS", ""); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("KAFKA_TLS=%q: want true or false", v))
		}
		s.TLS = on
	}
	if !s.TLS && (s.TLSCAFile != "" || s.TLSCertFile != "" || s.TLSKeyFile != "" || s.TLSServerName != "") {
		errs = append(errs, errors.New("KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE or KAFKA_TLS_SERVER_NAME is set but KAFKA_TLS is not true"))
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("KAFKA_TLS_CERT_FILE and KAFKA_TLS_KEY_FILE go together (a client certificate and its key)"))
	}
	return s, errs
}

// Options returns the franz-go options for SASL and TLS. It reads the
// certificate files, so a missing or malformed one fails at start.
func (s Config) Options() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	switch s.SASLMechanism {
	case MechanismPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsMechanism()))
	case MechanismScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsSha256Mechanism()))
	case MechanismScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: s.SASLUsername, Pass: s.SASLPassword}.AsSha512Mechanism()))
	}
	if !s.TLS {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.TLSServerName}
	if s.TLSCAFile != "" {
		pem, err := os.ReadFile(s.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_TLS_CA_FILE: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("KAFKA_TLS_CA_FILE %s holds no PEM certificate", s.TLSCAFile)
		}
	}
	if s.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	// franz-go clones the config per connection and fills in ServerName
	// from the broker's host when it is empty.
	return append(opts, kgo.DialTLSConfig(cfg)), nil
}

// PlaintextPassword reports whether SASL would send the password in the
// clear: PLAIN without TLS.
func (s Config) PlaintextPassword() bool {
	return s.SASLMechanism == MechanismPlain && !s.TLS
}
