module blackfriday.local/services/loadgen

go 1.26.0

require (
	blackfriday.local/contract v0.0.0
	blackfriday.local/gen v0.0.0
	blackfriday.local/test/pipelinetest v0.0.0
	connectrpc.com/connect v1.21.1
	google.golang.org/protobuf v1.36.12
)

require buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go v1.36.12-20260825204119-511051f7f437.2 // indirect

replace blackfriday.local/gen => ../../gen

replace blackfriday.local/test/pipelinetest => ../../test/pipelinetest

replace blackfriday.local/contract => ../../contract
