package consume

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/contract/record"
	"blackfriday.local/services/aggregator/internal/aggregate"
)

// deadLetterRecord copies a record that cannot be counted for the
// dead-letter topic: the original key, value and headers, plus why and where
// it came from (the record contract's dlq- headers), so it can be inspected
// and replayed by hand.
func deadLetterRecord(topic string, dl aggregate.DeadLetter) *kgo.Record {
	r := dl.Record
	headers := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
	headers = append(headers, r.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: record.HeaderDLQReason, Value: []byte(dl.Err.Error())},
		kgo.RecordHeader{Key: record.HeaderDLQTopic, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: record.HeaderDLQPartition, Value: []byte(strconv.FormatInt(int64(r.Partition), 10))},
		kgo.RecordHeader{Key: record.HeaderDLQOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
	)
	return &kgo.Record{
		Topic:   topic,
		Key:     r.Key,
		Value:   r.Value,
		Headers: headers,
	}
}
