package settings

import (
	"reflect"
	"strings"
	"testing"

	"blackfriday.local/contract/kafkasecurity"
)

func TestKafkaLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    kafkasecurity.Config
		wantErr string
	}{
		{name: "defaults"},
		{
			name: "everything set",
			env: map[string]string{
				"KAFKA_SASL_MECHANISM": " scram-sha-512 ", "KAFKA_SASL_USERNAME": "api", "KAFKA_SASL_PASSWORD": " pass word ",
				"KAFKA_TLS": "true", "KAFKA_TLS_CA_FILE": "/ca.crt", "KAFKA_TLS_CERT_FILE": "/user.crt",
				"KAFKA_TLS_KEY_FILE": "/user.key", "KAFKA_TLS_SERVER_NAME": "kafka",
			},
			want: kafkasecurity.Config{
				SASLMechanism: "SCRAM-SHA-512", SASLUsername: "api", SASLPassword: " pass word ",
				TLS: true, TLSCAFile: "/ca.crt", TLSCertFile: "/user.crt", TLSKeyFile: "/user.key", TLSServerName: "kafka",
			},
		},
		{name: "TLS off said", env: map[string]string{"KAFKA_TLS": "0"}},
		{name: "bad TLS", env: map[string]string{"KAFKA_TLS": "yes please"}, wantErr: `KAFKA_TLS="yes please": want true or false`},
		{name: "CA without TLS", env: map[string]string{"KAFKA_TLS_CA_FILE": "/ca"}, wantErr: "KAFKA_TLS is not true"},
		{name: "password without mechanism", env: map[string]string{"KAFKA_SASL_PASSWORD": " "}, wantErr: "KAFKA_SASL_MECHANISM is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var k Kafka
			if _, err := Parse(&k, lookup(tt.env)); err != nil {
				t.Fatal(err)
			}
			got, errs := k.Load()
			if tt.wantErr != "" {
				if len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.wantErr) {
					t.Errorf("Load() of %q = %v, want an error holding %q", tt.env, errs, tt.wantErr)
				}
				return
			}
			if len(errs) > 0 || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Load() of %q = %+v, %v; want %+v", tt.env, got, errs, tt.want)
			}
		})
	}
}

// TestKafkaDeclared: Load hands kafkasecurity.Load the settings Kafka
// declares, so it must declare every variable that reads, or that one
// would never see a value.
func TestKafkaDeclared(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, s := range Of(Kafka{}) {
		names[s.Name] = true
	}
	str := func(name, def string) string {
		if !names[name] {
			t.Errorf("kafkasecurity.Load reads %s, which Kafka does not declare", name)
		}
		return def
	}
	kafkasecurity.Load(str, func(name string) (string, bool) { return str(name, ""), false })
}
