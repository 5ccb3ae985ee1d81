package dashboard

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Field is one column of a result frame.
type Field struct {
	Name   string
	Values []any // float64 or string
}

// Frame is a query's result, shaped like the plugin's data frame.
type Frame struct {
	Fields []Field
}

// Field returns the named field, or nil.
func (f *Frame) Field(name string) *Field {
	for i := range f.Fields {
		if f.Fields[i].Name == name {
			return &f.Fields[i]
		}
	}
	return nil
}

// Rows is how many values the frame's fields hold.
func (f *Frame) Rows() int {
	n := 0
	for _, fl := range f.Fields {
		n = max(n, len(fl.Values))
	}
	return n
}

// Command is the Redis command the plugin sends for t, over the time range
// [from, to] (XRANGE's default range).
func Command(t Target, from, to time.Time) ([]string, error) {
	if t.Query != "" {
		return strings.Fields(t.Query), nil
	}
	switch t.Command {
	case "hgetall", "hkeys", "smembers", "type", "get", "ttl", "hlen", "xlen", "llen", "scard":
		return []string{strings.ToUpper(t.Command), t.KeyName}, nil
	case "hget":
		return []string{"HGET", t.KeyName, t.Field}, nil
	case "hmget":
		return append([]string{"HMGET", t.KeyName}, strings.Fields(t.Field)...), nil
	case "zrange":
		cmd := []string{"ZRANGE", t.KeyName, t.Min, t.Max}
		if t.ZRangeQuery != "" {
			cmd = append(cmd, t.ZRangeQuery)
		}
		return append(cmd, "WITHSCORES"), nil
	case "xrange", "xrevrange":
		start, end := t.Start, t.End
		if start == "" {
			start = strconv.FormatInt(from.UnixMilli(), 10) + "-0"
		}
		if end == "" {
			end = strconv.FormatInt(to.UnixMilli(), 10) + "-0"
		}
		if t.Command == "xrevrange" {
			start, end = end, start
		}
		cmd := []string{strings.ToUpper(t.Command), t.KeyName, start, end}
		if t.Count > 0 {
			cmd = append(cmd, "COUNT", strconv.Itoa(t.Count))
		}
		return cmd, nil
	}
	return nil, fmt.Errorf("command %q is not one this test knows how the plugin runs", t.Command)
}

// Run sends the target's command and shapes the reply into a frame.
func Run(ctx context.Context, c rueidis.Client, t Target, from, to time.Time) (*Frame, []string, error) {
	cmd, err := Command(t, from, to)
	if err != nil {
		return nil, nil, err
	}
	if len(cmd) < 2 || cmd[1] == "" {
		return nil, cmd, fmt.Errorf("no key in %q", cmd)
	}
	resp := c.Do(ctx, c.B().Arbitrary(cmd...).Build())
	if err := resp.Error(); err != nil && !rueidis.IsRedisNil(err) {
		return nil, cmd, err
	}
	f := &Frame{}
	if t.Query != "" {
		vals, err := flatten(resp)
		if err != nil {
			return nil, cmd, err
		}
		f.Fields = []Field{{Name: "Value", Values: vals}}
		return f, cmd, nil
	}
	switch t.Command {
	case "hgetall":
		m, err := resp.AsStrMap()
		if err != nil {
			return nil, cmd, err
		}
		for k, v := range m {
			f.Fields = append(f.Fields, Field{Name: k, Values: []any{number(v)}})
		}
	case "hmget":
		arr, err := resp.ToArray()
		if err != nil {
			return nil, cmd, err
		}
		for i, name := range cmd[2:] {
			s, err := arr[i].ToString()
			if err != nil {
				return nil, cmd, fmt.Errorf("field %s is missing", name)
			}
			f.Fields = append(f.Fields, Field{Name: name, Values: []any{number(s)}})
		}
	case "hget":
		s, err := resp.ToString()
		if err != nil {
			return nil, cmd, fmt.Errorf("field %s is missing", t.Field)
		}
		f.Fields = []Field{{Name: t.Field, Values: []any{number(s)}}}
	case "zrange":
		scores, err := resp.AsZScores()
		if err != nil {
			return nil, cmd, err
		}
		for _, z := range scores {
			f.Fields = append(f.Fields, Field{Name: z.Member, Values: []any{z.Score}})
		}
	case "xrange", "xrevrange":
		entries, err := resp.AsXRange()
		if err != nil {
			return nil, cmd, err
		}
		var names []string
		seen := map[string]bool{}
		for _, e := range entries {
			for k := range e.FieldValues {
				if !seen[k] {
					seen[k] = true
					names = append(names, k)
				}
			}
		}
		sort.Strings(names)
		times := Field{Name: "$time"}
		for _, e := range entries {
			times.Values = append(times.Values, e.ID)
		}
		f.Fields = append(f.Fields, times)
		for _, n := range names {
			fl := Field{Name: n}
			for _, e := range entries {
				fl.Values = append(fl.Values, number(e.FieldValues[n]))
			}
			f.Fields = append(f.Fields, fl)
		}
	default:
		vals, err := flatten(resp)
		if err != nil {
			return nil, cmd, err
		}
		f.Fields = []Field{{Name: "Value", Values: vals}}
	}
	return f, cmd, nil
}

func flatten(r rueidis.RedisResult) ([]any, error) {
	msg, err := r.ToMessage()
	if err != nil {
		return nil, err
	}
	var out []any
	var walk func(rueidis.RedisMessage)
	walk = func(m rueidis.RedisMessage) {
		if arr, err := m.ToArray(); err == nil {
			for _, e := range arr {
				walk(e)
			}
			return
		}
		if s, err := m.ToString(); err == nil {
			out = append(out, number(s))
			return
		}
		if n, err := m.AsInt64(); err == nil {
			out = append(out, float64(n))
		}
	}
	walk(msg)
	return out, nil
}

// number parses s as the plugin does: a number when it is one.
func number(s string) any {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return f
	}
	return s
}
