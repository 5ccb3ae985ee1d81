package consume

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/services/aggregator/internal/aggregate"
)

// Headers added to a dead-lettered record, next to its original headers.
const (
	HeaderDLQReason    = "dlq-reason"
	HeaderDLQTopic     = "dlq-topic"
	HeaderDLQPartition = "dlq-partition"
	HeaderDLQOffset    = "dlq-offset"
)

// deadLetterRecord copies a record that cannot be counted for the
// dead-letter topic: the original key, value and headers, plus why and where
// it came from, so it can be inspected and replayed by hand.
func deadLetterRecord(topic string, dl aggregate.DeadLetter) *kgo.Record {
	r := dl.Record
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
	headers = append(headers, r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(dl.Err.Error())},
		kgo.RecordHeader{Key: HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	)
	return &kgo.Record{
		Topic:   topic,
		Key:     r.Key,
		Value:   r.Value,
		Headers: headers,
	}
}
