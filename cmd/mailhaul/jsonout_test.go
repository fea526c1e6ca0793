package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestWriteJSON: the streamed document parses to what encoding/json makes
// of the whole value, for empty and full rows, with and without a head.
func TestWriteJSON(t *testing.T) {
	type row struct {
		Name string   `json:"name"`
		N    int      `json:"n"`
		Tags []string `json:"tags,omitempty"`
	}
	type head struct {
		A    string `json:"a"`
		B    []int  `json:"b"`
		Rows []row  `json:"rows,omitempty"`
	}
	type empty struct {
		Rows []row `json:"rows,omitempty"`
	}
	rows := []row{{"x\n\"y\"", 1, nil}, {"<&>", 2, []string{"t"}}}
	for _, tc := range []struct {
		name string
		head any
		rows []row
		want any
	}{
		{"head and rows", head{A: "a", B: []int{1, 2}}, rows, head{A: "a", B: []int{1, 2}, Rows: rows}},
		{"head, no rows", head{A: "a"}, nil, map[string]any{"a": "a", "b": nil, "rows": []any{}}},
		{"empty head", empty{}, rows, empty{Rows: rows}},
		{"rows alone", nil, rows, rows},
		{"nothing", nil, []row{}, []row{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := writeJSON(&buf, tc.head, "rows", tc.rows); err != nil {
				t.Fatal(err)
			}
			var got, want any
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, buf.String())
			}
			b, _ := json.Marshal(tc.want)
			json.Unmarshal(b, &want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %v\nwant %v\n%s", got, want, buf.String())
			}
			if buf.Bytes()[buf.Len()-1] != '\n' {
				t.Errorf("no final newline")
			}
		})
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, []int{1}, "rows", rows); err == nil {
		t.Errorf("a head that is not an object was accepted:\n%s", buf.String())
	}
}
