// Package contract is the one copy of what the services share besides the
// protobuf schema, in its packages: record, the headers and ingest protocols
// of a sales record on Kafka; keys, the Valkey key schema; kafkasecurity,
// how a client authenticates to Kafka; settings, how a service declares and
// reads its configuration. The services import them and never
// each other, and no Go file outside this module and gen spells a header
// name or a key name (the test of this package checks it).
package contract
