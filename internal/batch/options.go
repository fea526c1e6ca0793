package batch

import (
	"errors"
	"strings"
)

// SplitOptions splits the options column of a row into arguments, the way
// a POSIX shell splits words, without expansions: blanks separate
// arguments; '...' keeps everything literally; "..." keeps everything but
// \" and \\, which stand for " and \; outside quotes a backslash keeps the
// next character. So `--map 'Sent Items=Sent' --include "Archive/*"` is
// four arguments. (In a CSV cell, a double quote is written twice:
// "--map ""Sent Items=Sent""".) An unterminated quote is an error.
func SplitOptions(s string) ([]string, error) {
	var (
		out  []string
		cur  strings.Builder
		have bool // cur holds an argument, possibly empty ('')
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		case c == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, errors.New("unterminated ' quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			have, i = true, j
		case c == '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && (rs[j+1] == '"' || rs[j+1] == '\\') {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, errors.New(`unterminated " quote`)
			}
			have, i = true, j
		case c == '\\':
			if i+1 == len(rs) {
				return nil, errors.New("backslash at the end")
			}
			i++
			cur.WriteRune(rs[i])
			have = true
		default:
			cur.WriteRune(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}
