package consume

// A partition's log can go back under the offset Valkey stores for it: the
// topic was deleted and created again (a new topic ID, offsets from 0), or
// the log lost records that were counted (an unclean leader election, a
// lost disk on a single replica), and new records take their offsets.
// Skipping the records below the stored offset as "already counted" would
// then drop sales nobody counted. The consumer detects it three ways:
//
//   - the topic ID stored with the offset is not the topic's ID now;
//   - the log ends below the stored offset;
//   - franz-go reports kgo.ErrDataLoss: with the leader epoch stored with
//     the offset, it asks the broker where the log diverged (KIP-320), which
//     catches a log that lost records and has grown past the stored offset
//     again, where comparing offsets cannot.
//
// It then moves the stored position back, with a compare-and-set like the
// apply's, to where counting resumes: a recreated topic from 0, a truncated
// log from where it diverged (or, when nobody can tell, from its start: the
// dedup set drops what was counted within the window). What was counted
// before stays counted. It logs the event at error level, counts it, and is
// not ready for Config.LogResetUnready.

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"blackfriday.local/services/aggregator/internal/store"
)

// Why a partition's stored offset moved back, as logged and counted.
const (
	reasonRecreated = "recreated"
	reasonTruncated = "truncated"
)

// topicIDString renders a Kafka topic ID as Kafka's tools print it (base64,
// URL alphabet, no padding); "" for none.
func topicIDString(id [16]byte) string {
	if id == [16]byte{} {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

// partitionLog is what a partition's log holds now.
type partitionLog struct {
	start, end int64
	// epochEnd is where the log's records of the stored leader epoch end
	// (OffsetForLeaderEpoch): where the log diverged from what was counted
	// under that epoch. -1 when not asked, or the broker cannot tell.
	epochEnd int64
}

// topicLog is what the topic holds now.
type topicLog struct {
	// gone is set when the topic does not exist.
	gone bool
	// id is the topic ID, "" when the broker gives none.
	id    string
	parts map[int32]partitionLog
}

// verdict is what a stored position means against the partition's log.
type verdict struct {
	// reason is reasonRecreated or reasonTruncated when the log went back
	// under the stored offset, "" when counting goes on from it.
	reason string
	// adopt is set when the position has no topic ID (stored before they
	// were): the topic's current one is recorded, once.
	adopt bool
	// to is where the stored position moves.
	to store.Position
	// rewound is how far the stored offset moves back.
	rewound int64
}

func (v verdict) moves() bool { return v.reason != "" || v.adopt }

// judge compares a partition's stored position with the topic's ID and, if
// known (l not nil), the partition's log, and tells where counting must
// resume.
func judge(stored store.Position, topicID string, l *partitionLog) verdict {
	v := verdict{to: stored}
	if stored.Offset < 0 {
		// Nothing counted: everything in the log is new.
		return v
	}
	switch {
	case topicID == "":
		// A broker without topic IDs: only offsets can tell.
	case stored.TopicID == "":
		// Offsets stored before topic IDs were: they are taken to be the
		// current topic's. A topic recreated before that can still be
		// seen below, while its new log ends below the stored offset.
		v.adopt = true
		v.to.TopicID = topicID
	case stored.TopicID != topicID:
		// A new incarnation of the topic: its records are all new.
		v.reason = reasonRecreated
		v.to = store.Position{Offset: 0, TopicID: topicID, Epoch: -1}
		v.rewound = stored.Offset
		return v
	}
	if l == nil || stored.Offset <= l.end {
		// Counting goes on from the stored offset. If the log lost
		// records there and grew back past it, franz-go's check of the
		// stored epoch reports it (kgo.ErrDataLoss).
		return v
	}
	// The log ends below what was counted. Where the broker can say where
	// the stored epoch's records end, the log diverged there; otherwise
	// nobody knows which records left are ones counted, and the whole
	// log is read again: the dedup set drops copies counted within its
	// window, and dropping none that were never counted comes first.
	resume := l.start
	if l.epochEnd >= 0 {
		resume = min(max(l.epochEnd, l.start), l.end)
	}
	v.reason = reasonTruncated
	v.to.Offset, v.to.Epoch = resume, -1
	v.rewound = stored.Offset - resume
	return v
}

// describeLog reads the topic's ID and its partitions' log bounds, and,
// for partitions whose log ends below a stored offset with a known epoch,
// where that epoch's records end.
func (c *Consumer) describeLog(ctx context.Context, cl *kgo.Client, topic string, parts []int32, stored map[int32]store.StoredPosition) (topicLog, error) {
	id, gone, err := describeTopic(ctx, cl, topic)
	if err != nil || gone {
		return topicLog{gone: gone}, err
	}
	log := topicLog{id: id, parts: make(map[int32]partitionLog, len(parts))}
	if len(parts) == 0 {
		return log, nil
	}
	// Never Close adm: it would close the consumer's client.
	adm := kadm.NewClient(cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return topicLog{}, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return topicLog{}, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var epochs kadm.OffsetForLeaderEpochRequest
	for _, p := range parts {
		s, okS := starts.Lookup(topic, p)
		e, okE := ends.Lookup(topic, p)
		if !okS || !okE || s.Err != nil || e.Err != nil {
			return topicLog{}, fmt.Errorf("log bounds of %s/%d: %w", topic, p, errors.Join(s.Err, e.Err, errors.New("no answer")))
		}
		log.parts[p] = partitionLog{start: s.Offset, end: e.Offset, epochEnd: -1}
		if sp := stored[p]; sp.Err == nil && sp.Offset > e.Offset && sp.Epoch >= 0 && (sp.TopicID == "" || sp.TopicID == log.id) {
			epochs.Add(topic, p, sp.Epoch)
		}
	}
	if len(epochs) == 0 {
		return log, nil
	}
	answers, err := adm.OffsetForLeaderEpoch(ctx, epochs)
	if err != nil {
		return topicLog{}, fmt.Errorf("where the stored epochs of %s end: %w", topic, err)
	}
	for p := range epochs[topic] {
		a, ok := answers[topic][p]
		if !ok || a.Err != nil {
			return topicLog{}, fmt.Errorf("where epoch %d of %s/%d ends: %w", epochs[topic][p], topic, p, errors.Join(a.Err, errors.New("no answer")))
		}
		l := log.parts[p]
		l.epochEnd = a.EndOffset // -1: the broker has no record of the epoch
		log.parts[p] = l
	}
	return log, nil
}

// describeTopic asks a broker for the topic's ID now, bypassing the
// client's metadata cache (kadm's answers may be seconds old), and never
// creating the topic.
func describeTopic(ctx context.Context, cl *kgo.Client, topic string) (id string, gone bool, err error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = false
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return "", false, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		err := kerr.ErrorForCode(t.ErrorCode)
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return "", true, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("describe topic %s: %w", topic, err)
		}
		return topicIDString(t.TopicID), false, nil
	}
	return "", true, nil
}

// part returns the partition's log, nil when unknown.
func (l topicLog) part(p int32) *partitionLog {
	if pl, ok := l.parts[p]; ok {
		return &pl
	}
	return nil
}

// settle reads the stored positions of newly assigned partitions, judges
// them against the topic's log, and moves those the log went back under
// (and records the topic ID of those stored without one). Several members
// may race to move a position: the compare-and-set lets one win, and the
// others read again and find it settled.
func (c *Consumer) settle(ctx context.Context, cl *kgo.Client, topic string, parts []int32) (map[int32]store.StoredPosition, error) {
	for {
		stored, err := c.loadPositions(ctx, topic, parts)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(parts, func(p int32) bool { return stored[p].Err == nil && stored[p].Offset >= 0 }) {
			// Nothing counted yet: nothing to check.
			return stored, nil
		}
		var log topicLog
		if err := c.retry(ctx, "read the topic's log bounds", func() error {
			var err error
			log, err = c.describeLog(ctx, cl, topic, parts, stored)
			return err
		}); err != nil {
			return nil, err
		}
		raced := false
		for _, p := range parts {
			sp := stored[p]
			if sp.Err != nil {
				continue
			}
			v := judge(sp.Position, log.id, log.part(p))
			if !v.moves() {
				continue
			}
			moved, err := c.move(ctx, topic, p, sp.Position, v)
			if errors.Is(err, store.ErrGuard) {
				sp.Err = err
				stored[p] = sp
				continue
			}
			if err != nil {
				return nil, err
			}
			if !moved {
				raced = true
				continue
			}
			sp.Position = v.to
			stored[p] = sp
		}
		if !raced {
			return stored, nil
		}
	}
}

// move moves a partition's stored position from what was read to the
// verdict's, and reports it. It returns false when the position was no
// longer what was read: another member moved it first.
func (c *Consumer) move(ctx context.Context, topic string, partition int32, from store.Position, v verdict) (bool, error) {
	var out store.Outcome
	err := c.retry(ctx, "move the stored offset", func() error {
		var err error
		out, err = c.store.Reset(ctx, topic, partition, from, v.to)
		return err
	})
	if err != nil || !out.Applied {
		return false, err
	}
	c.reportMove(topic, partition, from, v)
	return true, nil
}

// reportMove logs a moved position, and for a log reset counts it and
// makes the consumer unready for a while: sales written before the event
// and not yet counted are lost, and an operator should know.
func (c *Consumer) reportMove(topic string, partition int32, from store.Position, v verdict) {
	if v.reason == "" {
		c.log.Info("recorded the topic id of an offset stored without one", "topic", topic, "partition", partition,
			"offset", from.Offset, "topic_id", v.to.TopicID)
		return
	}
	// Unready first, so that nobody reads the log line and still finds
	// the consumer ready.
	c.unready()
	c.cfg.Observer.LogReset(partition, v.reason, v.rewound)
	attrs := []any{"topic", topic, "partition", partition, "reason", v.reason,
		"counted_to", from.Offset, "resume_at", v.to.Offset, "rewound_offsets", v.rewound}
	switch v.reason {
	case reasonRecreated:
		c.log.Error("the topic was deleted and created again: counting the new topic from its start; what the old one held and was not yet counted is lost",
			append(attrs, "old_topic_id", from.TopicID, "topic_id", v.to.TopicID)...)
	default:
		c.log.Error("kafka lost records of this partition that were counted: counting again from where its log now continues; what was counted stays counted",
			append(attrs, "counted_epoch", from.Epoch, "topic_id", v.to.TopicID)...)
	}
}

// unready makes the consumer unready for Config.LogResetUnready from now.
func (c *Consumer) unready() {
	c.unreadyUntil.Store(time.Now().Add(c.cfg.LogResetUnready).UnixNano())
}

// dataLoss moves the partitions franz-go found diverged (kgo.ErrDataLoss) to
// where it resumed them, and returns them: this poll's records of those
// partitions predate the move and are dropped. franz-go checks epochs by
// topic name, so a recreated topic reports lost data too: that is not a
// truncation, and the client is replaced instead (see errTopicMoved).
func (c *Consumer) dataLoss(ctx context.Context, cl *kgo.Client, lost []*kgo.ErrDataLoss) (map[topicPartition]bool, error) {
	skip := make(map[topicPartition]bool, len(lost))
	if len(lost) == 0 {
		return skip, nil
	}
	var log topicLog
	if err := c.retry(ctx, "describe the topic", func() error {
		var err error
		log, err = c.describeLog(ctx, cl, c.cfg.Topic, nil, nil)
		return err
	}); err != nil {
		return nil, err
	}
	if log.gone || c.heldOtherID(c.cfg.Topic, log.id) {
		c.log.Warn("kafka reported lost records of a topic that was deleted or recreated; starting a new kafka client",
			"topic", c.cfg.Topic, "topic_id", log.id)
		c.topicMoved.Store(true)
		for _, dl := range lost {
			skip[topicPartition{topic: dl.Topic, partition: dl.Partition}] = true
		}
		return skip, nil
	}
	for _, dl := range lost {
		tp := topicPartition{topic: dl.Topic, partition: dl.Partition}
		held, ok := c.parts.position(tp)
		if !ok || held.offset < 0 {
			c.log.Warn("kafka lost records of a partition this member counted nothing of", "topic", dl.Topic, "partition", dl.Partition, "err", dl)
			continue
		}
		skip[tp] = true
		from := store.Position{Offset: held.offset, TopicID: held.topicID, Epoch: dl.ConsumedToEpoch}
		if dl.ResetTo >= held.offset {
			// franz-go resumed at or past what was counted, unable to tell
			// where the log diverged: records below may have been
			// replaced, and nobody can count them now.
			c.unready()
			c.cfg.Observer.LogReset(dl.Partition, reasonTruncated, 0)
			c.log.Error("kafka lost records of this partition: the log may have changed below the counted offset, where nobody can tell which records are new",
				"topic", dl.Topic, "partition", dl.Partition, "reason", reasonTruncated, "counted_to", held.offset, "err", dl)
			c.seek(cl, tp, held)
			continue
		}
		v := verdict{
			reason:  reasonTruncated,
			to:      store.Position{Offset: dl.ResetTo, TopicID: held.topicID, Epoch: dl.ResetToEpoch},
			rewound: held.offset - dl.ResetTo,
		}
		moved, err := c.move(ctx, tp.topic, tp.partition, from, v)
		if errors.Is(err, store.ErrGuard) {
			c.refuse(cl, tp, "", nil, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if !moved {
			// Valkey's position changed meanwhile; take it from there.
			stored, err := c.loadPositions(ctx, tp.topic, []int32{tp.partition})
			if err != nil {
				return nil, err
			}
			if sp := stored[tp.partition]; sp.Err == nil {
				c.conflict(cl, tp, held, sp.Position, "nothing; kafka reported lost records")
			}
			continue
		}
		c.seek(cl, tp, positionOf(v.to))
	}
	return skip, nil
}

// topicGone reports whether the topic this member reads is gone or was
// recreated, after franz-go reported an unknown topic ID: the Kafka client
// must then be replaced. An answer it cannot get counts as no.
func (c *Consumer) topicGone(ctx context.Context, cl *kgo.Client) bool {
	log, err := c.describeLog(ctx, cl, c.cfg.Topic, nil, nil)
	if err != nil {
		c.log.Warn("could not describe the topic", "topic", c.cfg.Topic, "err", err)
		return false
	}
	return log.gone || c.heldOtherID(c.cfg.Topic, log.id)
}

// heldOtherID reports whether this member holds a position of topic under
// another topic ID than id.
func (c *Consumer) heldOtherID(topic string, id string) bool {
	if id == "" {
		return false
	}
	for _, p := range c.parts.owned()[topic] {
		if pos, ok := c.parts.position(topicPartition{topic: topic, partition: p}); ok && pos.topicID != "" && pos.topicID != id {
			return true
		}
	}
	return false
}

// reconcile compares every owned partition's position with Valkey's and
// seeks the ones that differ: a conflict on one partition usually means
// Valkey lost or rewound everything, and partitions without traffic would
// otherwise never notice. It then judges each against the topic's log, as
// on assignment, so that a log gone back under the stored offset is found
// without traffic too.
func (c *Consumer) reconcile(ctx context.Context, cl *kgo.Client) error {
	for topic, parts := range c.parts.owned() {
		slices.Sort(parts)
		stored, err := c.loadPositions(ctx, topic, parts)
		if err != nil {
			return err
		}
		// Best effort: a Kafka hiccup must not hold the poll loop, and
		// the next reconcile checks again.
		log, err := c.describeLog(ctx, cl, topic, parts, stored)
		if err != nil {
			c.log.Warn("could not read the topic's log bounds; checking at the next reconcile", "topic", topic, "err", err)
			log = topicLog{}
		}
		if log.gone || c.heldOtherID(topic, log.id) {
			c.log.Warn("the topic was deleted or recreated; starting a new kafka client", "topic", topic, "topic_id", log.id)
			return errTopicMoved
		}
		for _, p := range parts {
			tp := topicPartition{topic: topic, partition: p}
			held, ok := c.parts.position(tp)
			if !ok {
				continue
			}
			sp := stored[p]
			switch {
			case sp.Err != nil:
				if !c.refused.has(tp) {
					c.refuse(cl, tp, "", nil, sp.Err)
				}
			case sp.Offset != held.offset || sp.TopicID != held.topicID:
				c.conflict(cl, tp, held, sp.Position, "nothing; found by reconciling")
			default:
				v := judge(sp.Position, log.id, log.part(p))
				if !v.moves() {
					continue
				}
				moved, err := c.move(ctx, topic, p, sp.Position, v)
				if errors.Is(err, store.ErrGuard) {
					c.refuse(cl, tp, "", nil, err)
					continue
				}
				if err != nil {
					return err
				}
				if !moved {
					continue
				}
				if v.reason == "" {
					// Only the topic ID was recorded: the fetch
					// position stays.
					c.parts.setPosition(tp, positionOf(v.to))
					continue
				}
				c.seek(cl, tp, positionOf(v.to))
			}
		}
	}
	if c.topicMoved.Load() {
		return errTopicMoved
	}
	return nil
}
