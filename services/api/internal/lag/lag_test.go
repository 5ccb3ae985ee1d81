package lag

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"blackfriday.local/services/api/internal/analytics"
)

func TestOffsets(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "sales"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close) // after the parallel subtests
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	producer, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("sales"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	for _, p := range []int32{0, 2, 2} {
		if err := producer.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		topic   string
		want    map[int32]analytics.PartitionOffsets
		wantErr bool
	}{
		{"sales", map[int32]analytics.PartitionOffsets{0: {End: 1}, 1: {}, 2: {End: 2}}, false},
		{"missing", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			t.Parallel()
			k, err := New(cluster.ListenAddrs(), tt.topic)
			if err != nil {
				t.Fatal(err)
			}
			defer k.Close()
			got, err := k.Offsets(ctx)
			if (err != nil) != tt.wantErr || len(got) != len(tt.want) {
				t.Fatalf("Offsets(%s) = %v, %v, want %v (error %v)", tt.topic, got, err, tt.want, tt.wantErr)
			}
			for p, o := range tt.want {
				if got[p] != o {
					t.Errorf("Offsets(%s)[%d] = %v, want %v", tt.topic, p, got[p], o)
				}
			}
		})
	}
}
