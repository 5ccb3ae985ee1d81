package consume

import (
	"testing"

	"blackfriday.local/services/aggregator/internal/store"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	const idA, idB = "vG2bLTqBTmKWRl0i6bLf8w", "AAAAAAAAQACAAAAAAAAAAQ"
	at := func(offset int64, id string, epoch int32) store.Position {
		return store.Position{Offset: offset, TopicID: id, Epoch: epoch}
	}
	log := func(start, end, epochEnd int64) *partitionLog {
		return &partitionLog{start: start, end: end, epochEnd: epochEnd}
	}
	tests := []struct {
		name    string
		stored  store.Position
		topicID string
		log     *partitionLog
		want    verdict
	}{
		{
			name:    "nothing counted",
			stored:  at(-1, "", -1),
			topicID: idA, log: log(0, 50, -1),
			want: verdict{to: at(-1, "", -1)},
		},
		{
			name:    "same topic, within the log",
			stored:  at(40, idA, 3),
			topicID: idA, log: log(0, 50, -1),
			want: verdict{to: at(40, idA, 3)},
		},
		{
			name:    "same topic, at the log end",
			stored:  at(50, idA, 3),
			topicID: idA, log: log(0, 50, -1),
			want: verdict{to: at(50, idA, 3)},
		},
		{
			name:    "same topic, log bounds unknown",
			stored:  at(400, idA, 3),
			topicID: idA, log: nil,
			want: verdict{to: at(400, idA, 3)},
		},
		{
			name:    "no topic id stored: adopted",
			stored:  at(40, "", -1),
			topicID: idA, log: log(0, 50, -1),
			want: verdict{adopt: true, to: at(40, idA, -1)},
		},
		{
			name:    "recreated",
			stored:  at(40, idA, 3),
			topicID: idB, log: log(0, 7, -1),
			want: verdict{reason: reasonRecreated, to: at(0, idB, -1), rewound: 40},
		},
		{
			name:    "recreated, its new log already past the old offset",
			stored:  at(40, idA, 3),
			topicID: idB, log: log(0, 900, -1),
			want: verdict{reason: reasonRecreated, to: at(0, idB, -1), rewound: 40},
		},
		{
			name:    "truncated where the stored epoch ends",
			stored:  at(40, idA, 3),
			topicID: idA, log: log(0, 30, 25),
			want: verdict{reason: reasonTruncated, to: at(25, idA, -1), rewound: 15},
		},
		{
			name:    "truncated, the epoch ending below the log start",
			stored:  at(40, idA, 3),
			topicID: idA, log: log(10, 30, 4),
			want: verdict{reason: reasonTruncated, to: at(10, idA, -1), rewound: 30},
		},
		{
			name:    "truncated, the broker has no record of the epoch",
			stored:  at(40, idA, 3),
			topicID: idA, log: log(5, 30, -1),
			want: verdict{reason: reasonTruncated, to: at(5, idA, -1), rewound: 35},
		},
		{
			name:    "truncated, no topic id stored: adopted and read again from the start",
			stored:  at(40, "", -1),
			topicID: idA, log: log(0, 12, -1),
			want: verdict{reason: reasonTruncated, adopt: true, to: at(0, idA, -1), rewound: 40},
		},
		{
			name:    "a broker without topic ids, log below",
			stored:  at(40, "", 2),
			topicID: "", log: log(0, 12, 9),
			want: verdict{reason: reasonTruncated, to: at(9, "", -1), rewound: 31},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := judge(tt.stored, tt.topicID, tt.log); got != tt.want {
				t.Errorf("judge(%+v, %q, %+v) = %+v, want %+v", tt.stored, tt.topicID, tt.log, got, tt.want)
			}
		})
	}
}

func TestTopicIDString(t *testing.T) {
	t.Parallel()
	// The ID of a topic as kafka-topics.sh --describe prints it.
	id := [16]byte{0xbc, 0x6d, 0x9b, 0x2d, 0x3a, 0x81, 0x4e, 0x62, 0x96, 0x46, 0x5d, 0x22, 0xe9, 0xb2, 0xdf, 0xf3}
	if got, want := topicIDString(id), "vG2bLTqBTmKWRl0i6bLf8w"; got != want {
		t.Errorf("topicIDString(%x) = %q, want %q", id, got, want)
	}
	if got := topicIDString([16]byte{}); got != "" {
		t.Errorf("topicIDString(zero) = %q, want \"\"", got)
	}
}
