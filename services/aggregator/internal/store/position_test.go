package store

import (
	"errors"
	"maps"
	"reflect"
	"testing"
)

const (
	idA = "vG2bLTqBTmKWRl0i6bLf8w" // topic IDs as Kafka's tools print them
	idB = "AAAAAAAAQACAAAAAAAAAAQ"
)

// setOffsets writes fields of the offsets hash, as given.
func (f *fixture) setOffsets(t *testing.T, fields map[string]string) {
	t.Helper()
	if len(fields) == 0 {
		return
	}
	cmd := f.client.B().Hset().Key(f.keys.Offsets()).FieldValue()
	for k, v := range fields {
		cmd = cmd.FieldValue(k, v)
	}
	f.do(t, cmd.Build())
}

func TestApplyComparesTopicID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		stored     map[string]string
		base, next Position
		want       Outcome
		// wantOffsets is the offsets hash afterwards; nil means unchanged.
		wantOffsets map[string]string
	}{
		{
			name:        "same topic",
			stored:      map[string]string{"sales:0": "5", "sales:0:topic-id": idA, "sales:0:epoch": "2@5"},
			base:        Position{Offset: 5, TopicID: idA, Epoch: 2},
			next:        Position{Offset: 7, TopicID: idA, Epoch: 3},
			want:        Outcome{Applied: true, Stored: 7, StoredTopicID: idA},
			wantOffsets: map[string]string{"sales:0": "7", "sales:0:topic-id": idA, "sales:0:epoch": "3@7"},
		},
		{
			name:        "first batch of a topic",
			base:        Position{Offset: 5, TopicID: idA, Epoch: -1},
			next:        Position{Offset: 7, TopicID: idA, Epoch: 0},
			stored:      map[string]string{"sales:0": "5", "sales:0:topic-id": idA},
			want:        Outcome{Applied: true, Stored: 7, StoredTopicID: idA},
			wantOffsets: map[string]string{"sales:0": "7", "sales:0:topic-id": idA, "sales:0:epoch": "0@7"},
		},
		{
			name:        "no topic id stored yet: recorded",
			stored:      map[string]string{"sales:0": "5"},
			base:        at(5),
			next:        Position{Offset: 7, TopicID: idA, Epoch: 4},
			want:        Outcome{Applied: true, Stored: 7, StoredTopicID: idA},
			wantOffsets: map[string]string{"sales:0": "7", "sales:0:topic-id": idA, "sales:0:epoch": "4@7"},
		},
		{
			name:   "epoch unknown: the stored one no longer matches",
			stored: map[string]string{"sales:0": "5", "sales:0:topic-id": idA, "sales:0:epoch": "2@5"},
			base:   Position{Offset: 5, TopicID: idA, Epoch: 2},
			next:   Position{Offset: 7, TopicID: idA, Epoch: -1},
			want:   Outcome{Applied: true, Stored: 7, StoredTopicID: idA},
			// LoadPositions reads "2@5" with offset 7 as no epoch.
			wantOffsets: map[string]string{"sales:0": "7", "sales:0:topic-id": idA, "sales:0:epoch": "2@5"},
		},
		{
			name:   "same offset, another incarnation of the topic",
			stored: map[string]string{"sales:0": "5", "sales:0:topic-id": idB},
			base:   Position{Offset: 5, TopicID: idA, Epoch: -1},
			next:   Position{Offset: 7, TopicID: idA, Epoch: 1},
			want:   Outcome{Stored: 5, StoredTopicID: idB},
		},
		{
			name:   "the batch names no topic, valkey does",
			stored: map[string]string{"sales:0": "5", "sales:0:topic-id": idB},
			base:   at(5),
			next:   at(7),
			want:   Outcome{Stored: 5, StoredTopicID: idB},
		},
		{
			name:   "the batch names a topic valkey has none for",
			stored: map[string]string{"sales:0": "5"},
			base:   Position{Offset: 5, TopicID: idA, Epoch: -1},
			next:   Position{Offset: 7, TopicID: idA, Epoch: 1},
			want:   Outcome{Stored: 5},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.setOffsets(t, tt.stored)
			before := f.snapshot(t)
			got, err := f.store.Apply(t.Context(), batchB(t), tt.base, tt.next)
			if err != nil || got != tt.want {
				t.Fatalf("Apply(%+v, %+v) = %+v, %v, want %+v", tt.base, tt.next, got, err, tt.want)
			}
			if tt.wantOffsets == nil {
				if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
					t.Errorf("a conflicting Apply() wrote %v, want %v", after, before)
				}
				return
			}
			if got := f.hash(t, f.keys.Offsets()); !maps.Equal(got, tt.wantOffsets) {
				t.Errorf("%s = %v, want %v", f.keys.Offsets(), got, tt.wantOffsets)
			}
		})
	}
}

func TestApplyRefusesUnreadableOffset(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.setOffsets(t, map[string]string{"sales:0": "twelve"})
	before := f.snapshot(t)
	if got, err := f.store.Apply(t.Context(), batchB(t), at(5), at(7)); !errors.Is(err, ErrGuard) {
		t.Errorf("Apply() over offset %q = %+v, %v, want ErrGuard", "twelve", got, err)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(after, before) {
		t.Errorf("a refused Apply() wrote %v, want %v", after, before)
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		stored      map[string]string
		base, next  Position
		want        Outcome
		wantOffsets map[string]string
	}{
		{
			name:        "topic recreated",
			stored:      map[string]string{"sales:0": "5", "sales:0:topic-id": idA, "sales:0:epoch": "2@5"},
			base:        Position{Offset: 5, TopicID: idA, Epoch: 2},
			next:        Position{Offset: 0, TopicID: idB, Epoch: -1},
			want:        Outcome{Applied: true, Stored: 0, StoredTopicID: idB},
			wantOffsets: map[string]string{"sales:0": "0", "sales:0:topic-id": idB, "sales:0:epoch": "2@5"},
		},
		{
			name:        "log truncated",
			stored:      map[string]string{"sales:0": "5", "sales:0:topic-id": idA, "sales:0:epoch": "2@5"},
			base:        Position{Offset: 5, TopicID: idA, Epoch: 2},
			next:        Position{Offset: 3, TopicID: idA, Epoch: 2},
			want:        Outcome{Applied: true, Stored: 3, StoredTopicID: idA},
			wantOffsets: map[string]string{"sales:0": "3", "sales:0:topic-id": idA, "sales:0:epoch": "2@3"},
		},
		{
			name:        "topic id recorded",
			stored:      map[string]string{"sales:0": "5"},
			base:        at(5),
			next:        Position{Offset: 5, TopicID: idA, Epoch: -1},
			want:        Outcome{Applied: true, Stored: 5, StoredTopicID: idA},
			wantOffsets: map[string]string{"sales:0": "5", "sales:0:topic-id": idA},
		},
		{
			name:   "another member moved it first",
			stored: map[string]string{"sales:0": "0", "sales:0:topic-id": idB},
			base:   Position{Offset: 5, TopicID: idA, Epoch: 2},
			next:   Position{Offset: 0, TopicID: idB, Epoch: -1},
			want:   Outcome{Stored: 0, StoredTopicID: idB},
		},
		{
			name:   "another member recorded the topic id first",
			stored: map[string]string{"sales:0": "5", "sales:0:topic-id": idA},
			base:   at(5),
			next:   Position{Offset: 5, TopicID: idB, Epoch: -1},
			want:   Outcome{Stored: 5, StoredTopicID: idA},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			// Counted sales and their dedup set stay as they are.
			f.apply(t, batchA(t), -1)
			f.do(t, f.client.B().Zadd().Key(f.keys.Seen("sales", 0)).ScoreMember().ScoreMember(1, "0123456789abcdef").Build())
			f.do(t, f.client.B().Del().Key(f.keys.Offsets()).Build())
			f.setOffsets(t, tt.stored)
			before := f.snapshot(t)
			got, err := f.store.Reset(t.Context(), "sales", 0, tt.base, tt.next)
			if err != nil || got != tt.want {
				t.Fatalf("Reset(%+v, %+v) = %+v, %v, want %+v", tt.base, tt.next, got, err, tt.want)
			}
			after := f.snapshot(t)
			if tt.wantOffsets != nil {
				if got := f.hash(t, f.keys.Offsets()); !maps.Equal(got, tt.wantOffsets) {
					t.Errorf("%s = %v, want %v", f.keys.Offsets(), got, tt.wantOffsets)
				}
				delete(before, f.keys.Offsets())
				delete(after, f.keys.Offsets())
			}
			if !reflect.DeepEqual(after, before) {
				t.Errorf("Reset() changed %v to %v, want only the offsets hash changed, if anything", before, after)
			}
		})
	}
}

func TestLoadPositions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.setOffsets(t, map[string]string{
		"sales:0": "5", "sales:0:topic-id": idA, "sales:0:epoch": "2@5",
		"sales:1": "9", "sales:1:epoch": "2@5", // moved since its epoch was stored
		"sales:2": "4", "sales:2:epoch": "junk",
		"sales:3": "twelve", "sales:3:topic-id": idA,
		"other:4": "1",
	})
	got, err := f.store.LoadPositions(t.Context(), "sales", []int32{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatalf("LoadPositions() = %v", err)
	}
	if !errors.Is(got[3].Err, ErrGuard) {
		t.Errorf("LoadPositions() of an offset %q = %+v, want an error wrapping ErrGuard", "twelve", got[3])
	}
	delete(got, 3)
	want := map[int32]StoredPosition{
		0: {Position: Position{Offset: 5, TopicID: idA, Epoch: 2}},
		1: {Position: Position{Offset: 9, Epoch: -1}},
		2: {Position: Position{Offset: 4, Epoch: -1}},
		4: {Position: Position{Offset: -1, Epoch: -1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadPositions() = %+v, want %+v", got, want)
	}
	if _, err := f.store.LoadOffsets(t.Context(), "sales", []int32{0, 3}); !errors.Is(err, ErrGuard) {
		t.Errorf("LoadOffsets() with an unreadable offset = %v, want ErrGuard", err)
	}
}
