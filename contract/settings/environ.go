package settings

// known.go lists every service's settings, from the README's tables.
//go:generate go test -run=TestKnownSettings . -args -update

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// CheckEnviron looks through a service's whole environment (os.Environ) for
// variables that look like its settings and are not, so that a misspelt
// or misplaced setting stops the start, loudly, instead of leaving its
// default in force without a word.
//
// A variable looks like one of service's settings when its name is
// upper-case and its first word (up to the first '_') begins one of the
// names declared, as KAFKA_ and MAX_ do for the api. Such a variable is not
// a mistake when it is:
//
//   - a setting of another of our services, which this one ignores: shells
//     and `make run` give both services one environment. It is returned in
//     notes, for the start-up log;
//   - a link Kubernetes adds for each Service of the namespace
//     (VALKEY_SERVICE_HOST, VALKEY_PORT_6379_TCP_ADDR, …);
//   - a variable other software is known to read (HTTP_PROXY, KAFKA_OPTS
//     and the like for Kafka's own scripts).
//
// Variables that begin with OTEL_ are OpenTelemetry's, never ours, and never
// an error: one the services' tracing reads (OpenTelemetry) passes, and any
// other is returned in notes, with the variable it was probably meant to be.
//
// Anything else is an error naming every such variable, with the setting
// each was probably meant to be.
func CheckEnviron(service string, declared []Setting, environ []string) (notes []string, err error) {
	ours := make(map[string]bool, len(declared))
	families := make(map[string]bool)
	for _, s := range declared {
		ours[s.Name] = true
		if family, _, ok := strings.Cut(s.Name, "_"); ok {
			families[family] = true
		}
	}
	var errs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OTEL_") {
			// OpenTelemetry's, never ours (see OpenTelemetry).
			if note := openTelemetryNote(name, service); note != "" {
				notes = append(notes, note)
			}
			continue
		}
		family, _, ok := strings.Cut(name, "_")
		switch {
		case ours[name], !ok, !families[family], name != strings.ToUpper(name),
			serviceLink.MatchString(name), conventional.MatchString(name):
			continue
		}
		if other := declaredBy(name, service); other != "" {
			notes = append(notes, fmt.Sprintf("%s is a setting of the %s; the %s ignores it", name, other, service))
			continue
		}
		msg := fmt.Sprintf("%s is not a setting of the %s", name, service)
		if near := nearest(name, declared); near != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", near)
		}
		errs = append(errs, errors.New(msg))
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("%s -h lists its settings", service))
	}
	return notes, errors.Join(errs...)
}

// serviceLink matches the variables Kubernetes sets for each Service in a
// pod's namespace (unless the pod sets enableServiceLinks: false):
// {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT, {SVC}_SERVICE_PORT_{PORTNAME},
// {SVC}_PORT and {SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR].
var serviceLink = regexp.MustCompile(`^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// conventional matches variables that other software reads and that share
// a first word with ours: Go's and curl's proxies, the JVM options of
// Kafka's own scripts, what the stack launcher reads to start a broker, and
// gRPC's own (grpc-go's logging and experiments, and the roots file that
// gRPC installs set machine-wide).
var conventional = regexp.MustCompile(`^(HTTPS?_PROXY|NO_PROXY|ALL_PROXY|KAFKA_(OPTS|HEAP_OPTS|JVM_PERFORMANCE_OPTS|LOG4J_OPTS|GC_LOG_OPTS|JMX_OPTS|DEBUG|HOME|CLUSTER_ID|VERSION|SCRAM_USERS|AUTHORIZER|EXTRA_PROPERTIES)|GRPC_(GO_[A-Z0-9_]+|EXPERIMENTAL_[A-Z0-9_]+|XDS_[A-Z0-9_]+|DEFAULT_SSL_ROOTS_FILE_PATH|TRACE|VERBOSITY|ENFORCE_ALPN_ENABLED))$`)

// declaredBy names the service other than service that declares name, or
// returns "".
func declaredBy(name, service string) string {
	for _, other := range slices.Sorted(maps.Keys(known)) {
		if other != service && slices.Contains(known[other], name) {
			return other
		}
	}
	return ""
}

// nearest returns the declared setting name closest to name, when it is
// close enough to be a slip: at most a third of the name's letters apart.
func nearest(name string, declared []Setting) string {
	best, bestDist := "", len(name)/3+1
	for _, s := range declared {
		if d := distance(name, s.Name); d < bestDist {
			best, bestDist = s.Name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
