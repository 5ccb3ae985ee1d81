module blackfriday.local/test/pipelinetest

go 1.26.0
