package settings_test

import (
	"strings"
	"testing"

	"blackfriday.local/contract/settings"
)

type apiLike struct {
	Brokers  string `env:"KAFKA_BROKERS" help:"brokers"`
	Inflight int    `env:"MAX_INFLIGHT_WRITES" help:"calls"`
	Port     int    `env:"PORT" help:"port"`
	GRPC     string `env:"GRPC_SERVER" help:"server"`
}

func TestCheckEnviron(t *testing.T) {
	declared := settings.Of(apiLike{})
	for _, tc := range []struct {
		name    string
		environ []string
		errs    []string // each must be in the error; none means no error
		notes   []string
	}{
		{name: "declared and foreign variables", environ: []string{
			"KAFKA_BROKERS=a:9092", "PORT=8080", "PATH=/bin", "HOME=/root", "CI=true", "BF_TEST_VALKEY_ADDR=x",
			"PORTS=1", "FAULTS_DURATION=8s",
		}},
		{name: "a slip of a declared name", environ: []string{"KAFKA_BROKER=a:9092", "MAX_INFLIGHT_WRITE=5"},
			errs: []string{
				"KAFKA_BROKER is not a setting of the api (did you mean KAFKA_BROKERS?)",
				"MAX_INFLIGHT_WRITE is not a setting of the api (did you mean MAX_INFLIGHT_WRITES?)",
				"api -h lists its settings",
			}},
		{name: "ours in form, near nothing", environ: []string{"MAX_SOMETHING_ELSE=1"},
			errs: []string{"MAX_SOMETHING_ELSE is not a setting of the api\n"}},
		{name: "the other service's setting", environ: []string{"KAFKA_DLQ_TOPIC=sales.dlq", "DEDUP_WINDOW=1m"},
			notes: []string{"KAFKA_DLQ_TOPIC is a setting of the aggregator; the api ignores it"}},
		{name: "kubernetes service links", environ: []string{
			"KAFKA_SERVICE_HOST=10.0.0.1", "KAFKA_SERVICE_PORT=9092", "KAFKA_SERVICE_PORT_TCP_CLIENTS=9092",
			"KAFKA_PORT=tcp://10.0.0.1:9092", "KAFKA_PORT_9092_TCP=tcp://10.0.0.1:9092",
			"KAFKA_PORT_9092_TCP_PROTO=tcp", "KAFKA_PORT_9092_TCP_PORT=9092", "KAFKA_PORT_9092_TCP_ADDR=10.0.0.1",
		}},
		{name: "opentelemetry's variables", environ: []string{
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
			"OTEL_SERVICE_NAME=x", "OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.1",
			"OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_EXPORTER_OTLP_TRACES_HEADERS=a=b",
		}},
		{name: "opentelemetry's, not read here", environ: []string{"OTEL_EXPORTER_OTLP_ENDPIONT=http://jaeger:4318", "OTEL_METRICS_EXPORTER=none"},
			notes: []string{
				"OTEL_EXPORTER_OTLP_ENDPIONT is not an OpenTelemetry variable the api's tracing reads (did you mean OTEL_EXPORTER_OTLP_ENDPOINT?)",
				"OTEL_METRICS_EXPORTER is not an OpenTelemetry variable the api's tracing reads",
			}},
		{name: "other software's variables", environ: []string{"KAFKA_OPTS=-X", "KAFKA_HEAP_OPTS=-Xmx1g", "KAFKA_SCRAM_USERS=api:pw", "HTTP_PROXY=http://proxy", "kafka_brokers=x"}},
		{name: "grpc's variables", environ: []string{"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=/etc/ssl/certs/ca-certificates.crt",
			"GRPC_GO_LOG_SEVERITY_LEVEL=info", "GRPC_TRACE=all", "GRPC_SERVER=grpc-go"}},
		{name: "a slip of GRPC_SERVER", environ: []string{"GRPC_SERVERS=connect"},
			errs: []string{"GRPC_SERVERS is not a setting of the api (did you mean GRPC_SERVER?)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, err := settings.CheckEnviron("api", declared, tc.environ)
			if len(tc.errs) == 0 && err != nil {
				t.Errorf("CheckEnviron(%q) = %v, want no error", tc.environ, err)
			}
			if len(tc.errs) > 0 {
				if err == nil {
					t.Fatalf("CheckEnviron(%q) = nil, want an error", tc.environ)
				}
				for _, want := range tc.errs {
					if !strings.Contains(err.Error()+"\n", want) {
						t.Errorf("CheckEnviron(%q) = %q, want it to say %q", tc.environ, err, want)
					}
				}
			}
			if strings.Join(notes, "|") != strings.Join(tc.notes, "|") {
				t.Errorf("CheckEnviron(%q) notes = %q, want %q", tc.environ, notes, tc.notes)
			}
		})
	}
}
