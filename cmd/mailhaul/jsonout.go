package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// writeJSON writes head as indented JSON with one more member, key, whose
// value is rows, written one row at a time: a report of 100,000 folders
// (or a check of 100,000 messages) is never held in memory as one JSON
// document, which took twice its size again for the indentation. head
// must marshal to an object that has no member key (give its field
// omitempty and leave it empty); nil head writes rows alone, as an array.
// The output is what json.Encoder with SetIndent("", "  ") writes for the
// whole value, but for the order of members (key comes last).
func writeJSON[T any](w io.Writer, head any, key string, rows []T) error {
	bw := bufio.NewWriter(w)
	indent := ""
	if head != nil {
		b, err := json.MarshalIndent(head, "", "  ")
		if err != nil {
			return err
		}
		b = bytes.TrimRight(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("}")), " \n")
		if len(b) == 0 || b[0] != '{' {
			return fmt.Errorf("json report: %T is not an object", head)
		}
		bw.Write(b)
		if len(b) > 1 {
			bw.WriteString(",")
		}
		k, _ := json.Marshal(key)
		fmt.Fprintf(bw, "\n  %s: ", k)
		indent = "  "
	}
	bw.WriteString("[")
	for i, r := range rows {
		b, err := json.MarshalIndent(r, indent+"  ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n" + indent + "  ")
		bw.Write(b)
	}
	if len(rows) > 0 {
		bw.WriteString("\n" + indent)
	}
	bw.WriteString("]")
	if head != nil {
		bw.WriteString("\n}")
	}
	bw.WriteString("\n")
	return bw.Flush()
}
