package settings

import (
	"cmp"

	"blackfriday.local/contract/kafkasecurity"
)

// Kafka declares the Kafka SASL and TLS settings both services read; a
// config struct holds it as a field. Its Load checks them.
type Kafka struct {
	SASLMechanism string `env:"KAFKA_SASL_MECHANISM" help:"'SCRAM-SHA-512', 'SCRAM-SHA-256' or 'PLAIN'; empty means no SASL"`
	SASLUsername  string `env:"KAFKA_SASL_USERNAME" help:"SASL user"`
	SASLPassword  string `env:"KAFKA_SASL_PASSWORD" secret:"true" verbatim:"true" help:"SASL password, taken as is: spaces may be part of it"`
	TLS           string `env:"KAFKA_TLS" envDefault:"false" help:"TLS to the brokers (1.2 minimum)"`
	TLSCAFile     string `env:"KAFKA_TLS_CA_FILE" help:"CA that verifies the brokers; empty means the system's roots"`
	TLSCertFile   string `env:"KAFKA_TLS_CERT_FILE" help:"client certificate for TLS, with 'KAFKA_TLS_KEY_FILE'"`
	TLSKeyFile    string `env:"KAFKA_TLS_KEY_FILE" help:"the client certificate's key"`
	TLSServerName string `env:"KAFKA_TLS_SERVER_NAME" help:"name each broker's certificate must hold; empty means the broker's host"`
}

// Load checks the parsed settings with kafkasecurity.Load, which holds the
// rules and the messages, and reports every mistake.
func (k Kafka) Load() (kafkasecurity.Config, []error) {
	values := make(map[string]string)
	for _, s := range settingsOf(k) {
		values[s.Name] = s.value.String()
	}
	return kafkasecurity.Load(
		func(name, def string) string { return cmp.Or(values[name], def) },
		func(name string) (string, bool) { v := values[name]; return v, v != "" })
}
