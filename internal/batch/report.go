package batch

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"
)

// Report is the outcome of a batch (or of one shard): one Record per
// account of the accounts file (or of the shard), in file order.
type Report struct {
	// Version is the mailhaul that produced this report; each record
	// names the one that ran its account.
	Version   string      `json:"mailhaul_version"`
	Generated time.Time   `json:"generated"`
	Batch     string      `json:"batch"`
	File      string      `json:"accounts_file"`
	Shard     string      `json:"shard,omitempty"` // "" = the whole batch
	States    []StateInfo `json:"states"`          // the state files read
	Accounts  []Record    `json:"accounts"`
	Totals    Totals      `json:"totals"`
}

// StateInfo describes one state file a report was made from.
type StateInfo struct {
	Path    string `json:"path"`
	Shard   string `json:"shard,omitempty"`
	Live    bool   `json:"live"` // a batch process holds it (accounts may be running)
	Version string `json:"mailhaul_version"`
}

// Totals sums a report.
type Totals struct {
	Accounts int     `json:"accounts"`
	Done     int     `json:"done"`
	Partial  int     `json:"partial"`
	Failed   int     `json:"failed"`
	Pending  int     `json:"pending"`
	Running  int     `json:"running"`
	Copied   int     `json:"copied"`
	Already  int     `json:"already"`
	Skipped  int     `json:"skipped"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"duration_seconds"` // summed over accounts
}

// NewReport builds the report of accounts from their records; an account
// without a record is Pending ("not run yet").
func NewReport(accounts []*Account, recs map[string]Record) Report {
	r := Report{Generated: time.Now().UTC(), Accounts: make([]Record, 0, len(accounts))}
	for _, a := range accounts {
		rec, ok := recs[a.Key]
		if !ok {
			rec = Record{Status: Pending, Reason: "not run yet"}
		}
		rec.Key, rec.Line, rec.Account, rec.Source, rec.Destination = a.Key, a.Line, a.Label, a.Source, a.Destination
		r.Accounts = append(r.Accounts, rec)
		t := &r.Totals
		t.Accounts++
		switch rec.Status {
		case Done:
			t.Done++
		case Partial:
			t.Partial++
		case Failed:
			t.Failed++
		case Running:
			t.Running++
		default:
			t.Pending++
		}
		t.Copied += rec.Copied
		t.Already += rec.Already
		t.Skipped += rec.Skipped
		t.Bytes += rec.Bytes
		t.Seconds += rec.Seconds
	}
	return r
}

// Complete reports whether every account is done.
func (r Report) Complete() bool { return r.Totals.Done == r.Totals.Accounts }

// MergeStates loads state files (those of several shards, see
// StatePaths) into one set of records; an account found in several (the
// shard count changed between runs) takes its newest record.
func MergeStates(paths []string) (map[string]Record, []StateInfo, error) {
	recs := map[string]Record{}
	var infos []StateInfo
	for _, p := range paths {
		h, rs, live, err := Load(p)
		if err != nil {
			return nil, nil, err
		}
		infos = append(infos, StateInfo{Path: p, Shard: h.Shard, Live: live, Version: h.Version})
		for k, r := range rs {
			if old, ok := recs[k]; !ok || r.Updated.After(old.Updated) {
				recs[k] = r
			}
		}
	}
	return recs, infos, nil
}

// csvHeader is the first row of the CSV report.
var csvHeader = []string{"line", "account", "source", "destination", "status", "exit_code", "copied", "already", "skipped",
	"bytes", "duration_seconds", "attempts", "started", "finished", "shard", "reason", "mailhaul_version", "report_mailhaul_version"}

// WriteCSV writes one row per account under a header row (csvHeader).
// mailhaul_version is the version that ran the account,
// report_mailhaul_version the one that wrote the report.
func (r Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(csvHeader)
	for _, a := range r.Accounts {
		cw.Write([]string{strconv.Itoa(a.Line), a.Account, a.Source, a.Destination, string(a.Status), strconv.Itoa(a.ExitCode),
			strconv.Itoa(a.Copied), strconv.Itoa(a.Already), strconv.Itoa(a.Skipped), strconv.FormatInt(a.Bytes, 10),
			strconv.FormatFloat(a.Seconds, 'f', 3, 64), strconv.Itoa(a.Attempts), a.Started, a.Finished, a.Shard, a.Reason,
			a.Version, r.Version})
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the report as one indented JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteFiles writes prefix+".csv" and prefix+".json" (each by write-new,
// fsync, rename) and returns their paths.
func (r Report) WriteFiles(prefix string) (csvPath, jsonPath string, err error) {
	csvPath, jsonPath = prefix+".csv", prefix+".json"
	var c, j bytes.Buffer
	if err := r.WriteCSV(&c); err != nil {
		return "", "", err
	}
	if err := r.WriteJSON(&j); err != nil {
		return "", "", err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{csvPath, c.Bytes()}, {jsonPath, j.Bytes()}} {
		if err := writeFileSync(f.path, f.data, 0o640); err != nil {
			return "", "", fmt.Errorf("write report %s: %w", filepath.Base(f.path), err)
		}
	}
	return csvPath, jsonPath, nil
}
