package batch

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// The environment of a Kubernetes Indexed Job. Kubernetes sets
// EnvCompletionIndex in every pod (0 .. completions-1) but publishes no
// variable with the number of completions: the manifest sets EnvShards to
// the Job's spec.completions (deploy/kubernetes/job.yaml).
const (
	EnvCompletionIndex = "JOB_COMPLETION_INDEX"
	EnvShards          = "MAILHAUL_SHARDS"
)

// Shard is shard K of N (K from 0, as JOB_COMPLETION_INDEX counts). The
// zero Shard is the whole file.
type Shard struct{ K, N int }

// Whole reports whether s is no sharding at all.
func (s Shard) Whole() bool { return s.N == 0 }

// String is "K/N", or "" for the whole file.
func (s Shard) String() string {
	if s.Whole() {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.K, s.N)
}

// Owns reports whether the account with shard key key belongs to s.
func (s Shard) Owns(key string) bool { return s.Whole() || ShardOf(key, s.N) == s.K }

// ShardOf is the shard (0 .. n-1) of an account: its key hashed
// (SHA-256), so the assignment depends on nothing but the key and n. Rows
// may be added, removed or reordered without moving the other accounts
// between shards; changing n moves most of them.
func ShardOf(key string, n int) int {
	h := sha256.Sum256([]byte(key))
	return int(binary.BigEndian.Uint64(h[:8]) % uint64(n))
}

// ParseShard parses "K/N" with 0 <= K < N.
func ParseShard(s string) (Shard, error) {
	ks, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	k, err1 := strconv.Atoi(ks)
	n, err2 := strconv.Atoi(ns)
	if !ok || err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("invalid shard %q: want K/N, e.g. 0/3 (K counts from 0)", s)
	}
	return NewShard(k, n)
}

// NewShard returns shard k of n after checking 0 <= k < n.
func NewShard(k, n int) (Shard, error) {
	if n < 1 || k < 0 || k >= n {
		return Shard{}, fmt.Errorf("invalid shard %d/%d: want 0 <= K < N (K counts from 0)", k, n)
	}
	return Shard{k, n}, nil
}

// ShardFromEnv returns the shard of a pod of a Kubernetes Indexed Job:
// K from EnvCompletionIndex, N from shards if > 0, else from EnvShards.
// ok is false when EnvCompletionIndex is not set (not in such a Job).
func ShardFromEnv(getenv func(string) string, shards int) (_ Shard, ok bool, _ error) {
	idx := getenv(EnvCompletionIndex)
	if idx == "" {
		if shards > 0 {
			return Shard{}, false, fmt.Errorf("--shards %d without a shard index: give --shard K/%d, or run in a Kubernetes Indexed Job (%s)", shards, shards, EnvCompletionIndex)
		}
		return Shard{}, false, nil
	}
	k, err := strconv.Atoi(idx)
	if err != nil {
		return Shard{}, true, fmt.Errorf("%s=%q is not a number", EnvCompletionIndex, idx)
	}
	n := shards
	if n <= 0 {
		ns := getenv(EnvShards)
		if ns == "" {
			return Shard{}, true, fmt.Errorf("%s=%d is set but the number of shards is not: set %s (or --shards) to the Job's spec.completions", EnvCompletionIndex, k, EnvShards)
		}
		if n, err = strconv.Atoi(ns); err != nil {
			return Shard{}, true, fmt.Errorf("%s=%q is not a number", EnvShards, ns)
		}
	}
	s, err := NewShard(k, n)
	if err != nil {
		return Shard{}, true, fmt.Errorf("%s=%d with %d shards: %w", EnvCompletionIndex, k, n, err)
	}
	return s, true, nil
}
