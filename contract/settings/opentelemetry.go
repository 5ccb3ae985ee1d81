package settings

import (
	"slices"
	"strings"
)

// openTelemetry lists the OpenTelemetry SDK's standard variables that the
// services' tracing reads (package telemetry; the OpenTelemetry environment
// variable specification says what each does). They are not settings of
// ours: -h and the README do not list them, the SDK reads and checks them.
// But manifests may set them (settingstest.CheckManifests) and the start-up
// check lets them through (CheckEnviron).
var openTelemetry = func() []string {
	names := []string{
		"OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
		"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
		"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT",
		"OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_EVENT_COUNT_LIMIT",
		"OTEL_SPAN_LINK_COUNT_LIMIT", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
	}
	// The OTLP exporter's, each for every signal and for traces alone.
	for _, v := range []string{"ENDPOINT", "PROTOCOL", "HEADERS", "TIMEOUT", "COMPRESSION", "INSECURE",
		"CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"} {
		names = append(names, "OTEL_EXPORTER_OTLP_"+v, "OTEL_EXPORTER_OTLP_TRACES_"+v)
	}
	slices.Sort(names)
	return names
}()

// OpenTelemetry reports whether name is one of the OpenTelemetry variables
// the services' tracing reads, such as OTEL_EXPORTER_OTLP_ENDPOINT.
func OpenTelemetry(name string) bool {
	_, found := slices.BinarySearch(openTelemetry, name)
	return found
}

// openTelemetryNote says what CheckEnviron notes of an OTEL_ variable that
// the services' tracing does not read, or "" for one it reads. It is a
// note, not an error: operators and their tools set OTEL_ variables for
// other signals and other SDKs on every pod. But a misspelt one (an
// endpoint's) leaves tracing off without a word, so it is worth a line.
func openTelemetryNote(name, service string) string {
	if !strings.HasPrefix(name, "OTEL_") || OpenTelemetry(name) {
		return ""
	}
	note := name + " is not an OpenTelemetry variable the " + service + "'s tracing reads"
	// The names share long stems, so only a slip of a letter or two is
	// a likely misspelling.
	best, bestDist := "", 3
	for _, known := range openTelemetry {
		if d := distance(name, known); d < bestDist {
			best, bestDist = known, d
		}
	}
	if best != "" {
		note += " (did you mean " + best + "?)"
	}
	return note
}
