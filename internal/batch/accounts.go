// Package batch is the engine of `mailhaul batch`: the accounts file (a
// CSV with a header row, one account per row), the stable assignment of
// rows to shards, the batch state (each account pending, running, done,
// partial or failed, journalled so that kill -9 loses nothing, locked so
// that two batch processes never interleave on it), the scheduler that
// runs accounts in parallel within per-server and per-account connection
// caps, and the reports (a CSV and a JSON file).
//
// The package knows nothing of endpoints and never touches the terminal:
// the command turns each Row into an Account (its identity, its label, the
// connections it holds while it runs), gives Run a function that copies
// one account (the same code as `mailhaul copy`), and renders the Events
// and the Report.
//
// One file per job: accounts.go (the file), options.go (the options
// column), shard.go, state.go, run.go (the queue and the connection caps),
// report.go.
package batch

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// The columns of an accounts file. Admins' scripts are written against
// these names: they never change meaning.
const (
	ColSource                    = "source"
	ColDestination               = "destination"
	ColSourcePasswordEnv         = "source_password_env"
	ColSourcePasswordFile        = "source_password_file"
	ColSourceOAuthTokenCmd       = "source_oauth_token_cmd"
	ColSourceOAuthTokenFile      = "source_oauth_token_file"
	ColDestinationPasswordEnv    = "destination_password_env"
	ColDestinationPasswordFile   = "destination_password_file"
	ColDestinationOAuthTokenCmd  = "destination_oauth_token_cmd"
	ColDestinationOAuthTokenFile = "destination_oauth_token_file"
	ColOptions                   = "options"
	ColName                      = "name"
	// The password itself, only with ParseOptions.AllowInlineSecrets.
	ColSourcePassword      = "source_password"
	ColDestinationPassword = "destination_password"
)

// Columns lists every known column, required ones first.
var Columns = []string{
	ColSource, ColDestination,
	ColSourcePasswordEnv, ColSourcePasswordFile, ColSourceOAuthTokenCmd, ColSourceOAuthTokenFile,
	ColDestinationPasswordEnv, ColDestinationPasswordFile, ColDestinationOAuthTokenCmd, ColDestinationOAuthTokenFile,
	ColOptions, ColName, ColSourcePassword, ColDestinationPassword,
}

// AllowSecretsFlag is the flag of the command that allows the inline
// password columns (named in error messages).
const AllowSecretsFlag = "--allow-secrets-in-csv"

// Secret says where the password or token of one side of a row comes
// from. At most one field is set.
type Secret struct {
	Env       string // name of an environment variable holding the password
	File      string // path of a file holding the password (trailing CR/LF removed)
	Cmd       string // command printing an OAuth2 access token (run with sh -c)
	TokenFile string // path of a file holding an OAuth2 access token (re-read as it is refreshed)
	Value     string // the password itself (inline in the file)
}

// Given reports whether any field is set.
func (s Secret) Given() bool { return s.count() > 0 }

func (s Secret) count() int { return countSet(s.Env, s.File, s.Cmd, s.TokenFile, s.Value) }

// OAuth reports whether the secret is an OAuth2 token (not a password).
func (s Secret) OAuth() bool { return s.Cmd != "" || s.TokenFile != "" }

// Check verifies, without running anything, that the secret can be had:
// the variable is set and not empty, the file is a readable, non-empty
// regular file. A token command cannot be checked without running it.
// side is "source" or "destination", for the message; getenv is
// os.Getenv in production.
func (s Secret) Check(side string, getenv func(string) string) error {
	switch {
	case s.Env != "":
		if getenv(s.Env) == "" {
			return fmt.Errorf("%s_password_env: environment variable %s is not set or empty", side, s.Env)
		}
	case s.File != "":
		return checkFile(side+"_password_file", s.File)
	case s.TokenFile != "":
		return checkFile(side+"_oauth_token_file", s.TokenFile)
	}
	return nil
}

func checkFile(col, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("%s: %w", col, unwrapPath(err))
	}
	if strings.TrimSpace(string(b)) == "" {
		return fmt.Errorf("%s %s: empty", col, path)
	}
	return nil
}

// unwrapPath keeps the path in an *fs.PathError message exactly once.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// Row is one account of the file, as written (cells trimmed of spaces,
// but for inline passwords).
type Row struct {
	// Line is the line of the file on which the row starts (the header
	// is line 1, comment lines count).
	Line                            int
	Name                            string
	Source, Destination             string
	SourceSecret, DestinationSecret Secret
	// Options is the options column split into arguments (SplitOptions).
	Options []string
}

// ParseOptions configure Parse.
type ParseOptions struct {
	// AllowInlineSecrets allows the source_password and
	// destination_password columns; the file must then not be readable by
	// everyone (Read checks).
	AllowInlineSecrets bool
}

// LineError is an error of one line of the accounts file.
type LineError struct {
	File string
	Line int // 0: the file as a whole
	Err  error
}

func (e *LineError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	case e.File != "":
		return fmt.Sprintf("%s: %v", e.File, e.Err)
	}
	return e.Err.Error()
}

func (e *LineError) Unwrap() error { return e.Err }

// Errors is every error found in an accounts file, in line order.
type Errors []*LineError

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Sort orders the errors by line (stable).
func (es Errors) Sort() {
	slices.SortStableFunc(es, func(a, b *LineError) int { return a.Line - b.Line })
}

// Read parses the accounts file at path (see Parse). With inline secrets
// allowed and present, a file readable by everyone is refused.
func Read(path string, o ParseOptions) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, Errors{{File: path, Err: unwrapPath(err)}}
	}
	defer f.Close()
	rows, inline, err := parse(path, f, o)
	if err != nil {
		return rows, err
	}
	if inline {
		fi, err := f.Stat()
		if err != nil {
			return nil, Errors{{File: path, Err: err}}
		}
		if m := fi.Mode().Perm(); m&0o004 != 0 {
			return nil, Errors{{File: path, Line: 1, Err: fmt.Errorf("holds passwords but is readable by everyone (mode %04o): chmod o-r %s", m, path)}}
		}
	}
	return rows, nil
}

// Parse reads an accounts file: a header row naming the columns (any
// order; unknown or repeated names are an error; source and destination
// are required), then one account per row. Lines starting with '#' are
// comments; rows whose cells are all empty are ignored; a UTF-8 byte-order
// mark is ignored. Every error found is returned (as Errors, each with its
// line) with the rows that parsed, except that parsing stops at broken
// quoting, after which lines cannot be told apart. Secrets are not checked
// here (Secret.Check).
func Parse(name string, r io.Reader, o ParseOptions) ([]Row, error) {
	rows, _, err := parse(name, r, o)
	return rows, err
}

func parse(name string, r io.Reader, o ParseOptions) (rows []Row, inline bool, _ error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.ReuseRecord = false
	var errs Errors
	fail := func(line int, format string, a ...any) {
		errs = append(errs, &LineError{File: name, Line: line, Err: fmt.Errorf(format, a...)})
	}
	header, err := cr.Read()
	if err == io.EOF {
		return nil, false, Errors{{File: name, Err: errors.New("empty: want a header row (source,destination,...) and one row per account")}}
	}
	if err != nil {
		return nil, false, Errors{{File: name, Line: lineOf(err, 1), Err: csvErr(err)}}
	}
	headerLine, _ := cr.FieldPos(0)
	col := map[string]int{}
	for i, h := range header {
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			fail(headerLine, "header: column %d has no name", i+1)
		case !slices.Contains(Columns, h):
			fail(headerLine, "header: unknown column %q (known: %s)", h, strings.Join(Columns, ", "))
		case h == ColSourcePassword || h == ColDestinationPassword:
			if !o.AllowInlineSecrets {
				side := strings.TrimSuffix(h, "_password")
				fail(headerLine, "header: column %s puts passwords in the file itself: allowed only with %s (and a file not readable by everyone); prefer %s_password_env or %s_password_file",
					h, AllowSecretsFlag, side, side)
			}
			inline = true
		}
		if _, dup := col[h]; dup && h != "" {
			fail(headerLine, "header: column %q given twice", h)
		}
		col[h] = i
	}
	for _, req := range []string{ColSource, ColDestination} {
		if _, ok := col[req]; !ok {
			fail(headerLine, "header: required column %q is missing (the header is %q)", req, strings.Join(header, ","))
		}
	}
	if len(errs) > 0 {
		return nil, false, errs
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line := 0
		if len(rec) > 0 {
			line, _ = cr.FieldPos(0)
		}
		if err != nil {
			if errors.Is(err, csv.ErrFieldCount) {
				fail(lineOf(err, line), "%d cells, the header has %d (a missing or extra column; quote a cell that holds a comma)", len(rec), len(header))
				continue
			}
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fail(pe.StartLine, "%v (the rest of the file was not read)", csvErr(err))
			} else {
				fail(line, "%v", err)
			}
			break
		}
		if allEmpty(rec) {
			continue
		}
		get := func(c string) string {
			if i, ok := col[c]; ok {
				if c == ColSourcePassword || c == ColDestinationPassword {
					return rec[i]
				}
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		row := Row{Line: line, Name: get(ColName), Source: get(ColSource), Destination: get(ColDestination)}
		row.SourceSecret = Secret{Env: get(ColSourcePasswordEnv), File: get(ColSourcePasswordFile), Cmd: get(ColSourceOAuthTokenCmd),
			TokenFile: get(ColSourceOAuthTokenFile), Value: get(ColSourcePassword)}
		row.DestinationSecret = Secret{Env: get(ColDestinationPasswordEnv), File: get(ColDestinationPasswordFile), Cmd: get(ColDestinationOAuthTokenCmd),
			TokenFile: get(ColDestinationOAuthTokenFile), Value: get(ColDestinationPassword)}
		bad := false
		if row.Source == "" {
			fail(line, "empty %s", ColSource)
			bad = true
		}
		if row.Destination == "" {
			fail(line, "empty %s", ColDestination)
			bad = true
		}
		for _, s := range []struct {
			side string
			sec  Secret
		}{{"source", row.SourceSecret}, {"destination", row.DestinationSecret}} {
			if n := s.sec.count(); n > 1 {
				fail(line, "%d secrets for the %s: give one of %s_password_env, %s_password_file, %s_oauth_token_cmd, %s_oauth_token_file", n, s.side, s.side, s.side, s.side, s.side)
				bad = true
			}
		}
		if opts, err := SplitOptions(get(ColOptions)); err != nil {
			fail(line, "%s: %v", ColOptions, err)
			bad = true
		} else {
			row.Options = opts
		}
		if !bad {
			rows = append(rows, row)
		}
	}
	if len(errs) > 0 {
		return rows, inline, errs
	}
	if len(rows) == 0 {
		return nil, inline, Errors{{File: name, Err: errors.New("no accounts: the file has a header but no rows")}}
	}
	return rows, inline, nil
}

func allEmpty(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// lineOf returns the start line of a csv.ParseError, else def.
func lineOf(err error, def int) int {
	var pe *csv.ParseError
	if errors.As(err, &pe) && pe.StartLine > 0 {
		return pe.StartLine
	}
	return def
}

// csvErr words a csv.ParseError without repeating its line number.
func csvErr(err error) error {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case errors.Is(pe.Err, csv.ErrQuote), errors.Is(pe.Err, csv.ErrBareQuote):
		return fmt.Errorf("bad quoting: %v (line %d, column %d; a cell with a quote must be quoted as a whole, quotes inside doubled: \"a \"\"b\"\"\")", pe.Err, pe.Line, pe.Column)
	}
	return fmt.Errorf("%v (line %d, column %d)", pe.Err, pe.Line, pe.Column)
}
