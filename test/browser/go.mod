module blackfriday.local/test/browser

go 1.26.0

replace blackfriday.local/gen => ../../gen

replace blackfriday.local/test/pipelinetest => ../pipelinetest

require (
	blackfriday.local/gen v0.0.0
	blackfriday.local/test/pipelinetest v0.0.0
	connectrpc.com/connect v1.21.1
	github.com/chromedp/chromedp v0.23.0
)

require (
	buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go v1.36.12-20260825204119-511051f7f437.2 // indirect
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
