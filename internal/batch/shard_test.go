package batch

import (
	"fmt"
	"strings"
	"testing"
)

func TestShardOfStable(t *testing.T) {
	// Golden values: the assignment must never change between versions
	// (a shard's state would then disagree with the file).
	for key, want := range map[string]int{"imap:alice@mail.example.org": 0, "imap:bob@mail.example.org": 1, "maildir:/srv/x": 1} {
		if got := ShardOf(key, 3); got != want {
			t.Errorf("ShardOf(%q, 3) = %d, want %d", key, got, want)
		}
	}
	// Every key lands in exactly one shard, and the shards are not badly
	// unbalanced on 3000 keys.
	count := make([]int, 3)
	for i := 0; i < 3000; i++ {
		key := fmt.Sprintf("imap:user%d@example.org", i)
		owners := 0
		for k := 0; k < 3; k++ {
			if (Shard{k, 3}).Owns(key) {
				owners++
				count[k]++
			}
		}
		if owners != 1 {
			t.Fatalf("%s owned by %d shards", key, owners)
		}
	}
	for k, n := range count {
		if n < 900 || n > 1100 {
			t.Errorf("shard %d has %d of 3000 keys", k, n)
		}
	}
}

func TestShardParse(t *testing.T) {
	if s, err := ParseShard("1/3"); err != nil || s != (Shard{1, 3}) || s.String() != "1/3" {
		t.Errorf("ParseShard(1/3) = %v, %v", s, err)
	}
	for _, bad := range []string{"3/3", "-1/3", "1", "a/b", "0/0", "1/3/4"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q): no error", bad)
		}
	}
}

func TestShardFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if _, ok, err := ShardFromEnv(env(nil), 0); ok || err != nil {
		t.Errorf("no env: ok %v err %v", ok, err)
	}
	if s, ok, err := ShardFromEnv(env(map[string]string{EnvCompletionIndex: "2", EnvShards: "3"}), 0); !ok || err != nil || s != (Shard{2, 3}) {
		t.Errorf("env: %v %v %v", s, ok, err)
	}
	if s, _, err := ShardFromEnv(env(map[string]string{EnvCompletionIndex: "1", EnvShards: "9"}), 4); err != nil || s != (Shard{1, 4}) {
		t.Errorf("--shards wins over the env: %v %v", s, err)
	}
	if _, _, err := ShardFromEnv(env(map[string]string{EnvCompletionIndex: "1"}), 0); err == nil || !strings.Contains(err.Error(), EnvShards) {
		t.Errorf("index without count: %v", err)
	}
	if _, _, err := ShardFromEnv(env(map[string]string{EnvCompletionIndex: "3", EnvShards: "3"}), 0); err == nil {
		t.Error("index 3 of 3 accepted")
	}
	if _, _, err := ShardFromEnv(env(nil), 3); err == nil {
		t.Error("--shards without an index accepted")
	}
}
