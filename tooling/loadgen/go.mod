module blackfriday.local/tooling/loadgen

go 1.26.0

require (
	blackfriday.local/contract v0.0.0
	blackfriday.local/gen v0.0.0
	blackfriday.local/tooling/stack v0.0.0
	connectrpc.com/connect v1.21.1
	golang.org/x/net v0.62.0
	google.golang.org/protobuf v1.36.12
)

require (
	buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go v1.36.12-20260825204119-511051f7f437.2 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/twmb/franz-go v1.22.3 // indirect
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c // indirect
	github.com/twmb/franz-go/pkg/kmsg v1.15.1 // indirect
)

replace blackfriday.local/gen => ../../gen

replace blackfriday.local/tooling/stack => ../stack

replace blackfriday.local/contract => ../../contract
