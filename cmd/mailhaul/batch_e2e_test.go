package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailhaul/mailhaul/internal/batch"
	"github.com/mailhaul/mailhaul/internal/testserver"
)

// End-to-end tests of mailhaul batch against two real Dovecots.

// batchAccount is one row of a generated accounts file.
type batchAccount struct {
	name             string
	srcURL, dstURL   string
	dst              *testserver.Dovecot // where the copy lands
	dstUser          string
	src              *testserver.Dovecot // nil for a Maildir source
	srcUser, maildir string
	secrets          map[string]string // column -> value
	options          string
	want             map[string][]string // destination folder -> sorted bodies
	total            int
}

// batchEnv is two Dovecots (A, B: each both source and destination of
// some rows), B behind a connection-counting proxy, and the files of a
// batch.
type batchEnv struct {
	a, b     *testserver.Dovecot
	bProxy   *countingProxy
	dir      string // secrets, Maildir sources, tokens
	state    string
	caFile   string // both servers' certificates
	env      []string
	accounts []*batchAccount
	oauth    *testserver.OAuth2Server
}

// returnMemory gives the memory earlier tests freed back to the system.
// Tests that read a child's peak RSS from rusage (TestMaildirSymlinkLoopsCLI)
// see this process's high-water mark in it; measured under -race, the
// batch tests run after the 100 MB tests of badinput_test.go raised that
// mark from 434 to 945 MiB without this, and leave it at 438 MiB with it.
func returnMemory() { debug.FreeOSMemory() }

// batchBody is the CRLF body of message m of account a (unique).
func batchBody(a, m int, rng *rand.Rand) string {
	return fmt.Sprintf("From: a%d@example.org\r\nTo: u%d@example.net\r\nSubject: account %d message %d\r\nMessage-ID: <a%d.m%d@batch.test>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\n%s\r\n",
		a, a, a, m, a, m, strings.Repeat("some text of the message body\r\n", 1+rng.Intn(60)))
}

// writeMaildirPlusPlus writes folder -> bodies as a Maildir++ tree at root
// (INBOX at the root, other folders as .Name).
func writeMaildirPlusPlus(t *testing.T, root string, folders map[string][]string) {
	t.Helper()
	i := 0
	for f, bodies := range folders {
		dir := root
		if f != "INBOX" {
			dir = filepath.Join(root, "."+f)
		}
		for _, s := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, s), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, b := range bodies {
			i++
			when := time.Unix(1262304000+int64(i)*3600, 0)
			p := filepath.Join(dir, "cur", fmt.Sprintf("%d.M%dP1.seed:2,S", when.Unix(), i))
			if err := os.WriteFile(p, []byte(b), 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(p, when, when)
		}
	}
}

// newBatchEnv builds n accounts of about msgs messages each (INBOX and
// Archive): rows 0..imapRows-1 IMAP -> IMAP (even: A -> B, odd: B -> A),
// the rest Maildir -> IMAP (even: to A, odd: to B). Passwords come from
// files and variables; every third destination logs in with an OAuth2
// token from a command or a file.
func newBatchEnv(t *testing.T, n, imapRows, msgs int, seed int64) *batchEnv {
	t.Helper()
	returnMemory()
	rng := rand.New(rand.NewSource(seed))
	e := &batchEnv{dir: t.TempDir(), state: t.TempDir(), oauth: testserver.StartOAuth2Server(t)}
	var usersA, usersB []testserver.Option
	for i := 0; i < n; i++ {
		src, dst := "A", "B"
		if i%2 == 1 {
			src, dst = "B", "A"
		}
		if i < imapRows {
			opt := testserver.WithUser(fmt.Sprintf("s%d", i), fmt.Sprintf("src-pw-%d-%x", i, rng.Int63()))
			if src == "A" {
				usersA = append(usersA, opt)
			} else {
				usersB = append(usersB, opt)
			}
		}
		opt := testserver.WithUser(fmt.Sprintf("d%d", i), fmt.Sprintf("dst-pw-%d-%x", i, rng.Int63()))
		if dst == "A" {
			usersA = append(usersA, opt)
		} else {
			usersB = append(usersB, opt)
		}
	}
	common := []testserver.Option{testserver.WithOAuth2(e.oauth.URL), testserver.WithoutAuthDelay()}
	e.a = testserver.StartDovecot(t, append(usersA, common...)...)
	e.b = testserver.StartDovecot(t, append(usersB, common...)...)
	var err error
	if e.bProxy, err = startCountingProxy(e.b.IMAPAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.bProxy.Close() })
	ca := filepath.Join(e.dir, "ca.pem")
	pa, _ := os.ReadFile(e.a.CAFile)
	pb, _ := os.ReadFile(e.b.CAFile)
	os.WriteFile(ca, append(pa, pb...), 0o644)
	e.caFile = ca

	// url names an account: A over implicit TLS, B in plain text through
	// the counting proxy (which reads the commands).
	url := func(d *testserver.Dovecot, user string) string {
		if d == e.a {
			return "imaps://" + user + "@" + e.a.IMAPSAddr
		}
		return "imap://" + user + "@" + e.bProxy.Addr()
	}
	for i := 0; i < n; i++ {
		a := &batchAccount{name: fmt.Sprintf("acct-%02d", i), secrets: map[string]string{}, want: map[string][]string{}}
		srcD, dstD := e.a, e.b
		if i%2 == 1 {
			srcD, dstD = e.b, e.a
		}
		folders := map[string][]string{}
		for m := 0; m < msgs; m++ {
			f := "INBOX"
			if m%3 == 2 {
				f = "Archive"
			}
			folders[f] = append(folders[f], batchBody(i, m, rng))
		}
		if i < imapRows {
			a.src, a.srcUser = srcD, fmt.Sprintf("s%d", i)
			writeMaildirPlusPlus(t, srcD.MaildirPath(a.srcUser), folders)
			if err := srcD.Chown(a.srcUser); err != nil {
				t.Fatal(err)
			}
			a.srcURL = url(srcD, a.srcUser)
			if i%2 == 0 {
				p := filepath.Join(e.dir, a.srcUser+".pw")
				os.WriteFile(p, []byte(srcD.Password(a.srcUser)+"\n"), 0o600)
				a.secrets[batch.ColSourcePasswordFile] = p
			} else {
				v := fmt.Sprintf("BATCH_SRC_PW_%d", i)
				e.env = append(e.env, v+"="+srcD.Password(a.srcUser))
				a.secrets[batch.ColSourcePasswordEnv] = v
			}
		} else {
			a.maildir = filepath.Join(e.dir, "maildir-"+a.name)
			writeMaildirPlusPlus(t, a.maildir, folders)
			a.srcURL = "maildir:" + a.maildir
		}
		a.dst, a.dstUser = dstD, fmt.Sprintf("d%d", i)
		a.dstURL = url(dstD, a.dstUser)
		switch i % 3 {
		case 0:
			v := fmt.Sprintf("BATCH_DST_PW_%d", i)
			e.env = append(e.env, v+"="+dstD.Password(a.dstUser))
			a.secrets[batch.ColDestinationPasswordEnv] = v
		case 1:
			p := filepath.Join(e.dir, a.dstUser+".pw")
			os.WriteFile(p, []byte(dstD.Password(a.dstUser)+"\n"), 0o600)
			a.secrets[batch.ColDestinationPasswordFile] = p
		case 2:
			p := filepath.Join(e.dir, a.dstUser+".token")
			os.WriteFile(p, []byte(e.oauth.Issue(a.dstUser)+"\n"), 0o600)
			if i%2 == 0 {
				a.secrets[batch.ColDestinationOAuthTokenCmd] = "cat '" + p + "'"
			} else {
				a.secrets[batch.ColDestinationOAuthTokenFile] = p
			}
		}
		for f, bodies := range folders {
			a.want[f] = append([]string{}, bodies...)
			sort.Strings(a.want[f])
			a.total += len(bodies)
		}
		e.accounts = append(e.accounts, a)
	}
	return e
}

// writeCSV writes the accounts file.
func (e *batchEnv) writeCSV(t *testing.T) string {
	t.Helper()
	cols := []string{batch.ColName, batch.ColSource, batch.ColDestination,
		batch.ColSourcePasswordEnv, batch.ColSourcePasswordFile, batch.ColSourceOAuthTokenCmd,
		batch.ColDestinationPasswordEnv, batch.ColDestinationPasswordFile, batch.ColDestinationOAuthTokenCmd, batch.ColDestinationOAuthTokenFile,
		batch.ColOptions}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(cols)
	for _, a := range e.accounts {
		row := []string{a.name, a.srcURL, a.dstURL}
		for _, c := range cols[3 : len(cols)-1] {
			row = append(row, a.secrets[c])
		}
		w.Write(append(row, a.options))
	}
	w.Flush()
	p := filepath.Join(e.dir, "accounts.csv")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// args is a batch command line over the accounts file.
func (e *batchEnv) args(file string, extra ...string) []string {
	return append(append([]string{"batch", "--json", "--insecure-plaintext", "--ca-file", e.caFile, "--settle-delay", "1s",
		"--state-dir", e.state}, extra...), file)
}

// check compares every destination with what its row should have
// brought, for the accounts listed (all when nil).
func (e *batchEnv) check(t *testing.T, only func(*batchAccount) bool) {
	t.Helper()
	for _, a := range e.accounts {
		if only != nil && !only(a) {
			continue
		}
		got := imapBodies(t, a.dst, a.dstUser)
		for f, bodies := range a.want {
			if strings.Join(got[f], "\x00") != strings.Join(bodies, "\x00") {
				t.Errorf("%s folder %q: %d messages, want %d (lost or duplicated): %s", a.name, f, len(got[f]), len(bodies), diffBodies(bodies, got[f]))
			}
		}
		for f := range got {
			if _, ok := a.want[f]; !ok {
				t.Errorf("%s: unexpected folder %q (%d messages)", a.name, f, len(got[f]))
			}
		}
	}
}

// parseReport decodes the JSON report a batch printed on stdout.
func parseReport(t *testing.T, r result) batch.Report {
	t.Helper()
	var rep batch.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("report: %v\nstdout:\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return rep
}

func byAccount(rep batch.Report) map[string]batch.Record {
	m := map[string]batch.Record{}
	for _, r := range rep.Accounts {
		m[r.Account] = r
	}
	return m
}

// TestBatchTwentyAccounts: 20 accounts between two Dovecots (IMAP -> IMAP
// both ways and Maildir -> IMAP, passwords from files and variables and
// OAuth2 tokens from a command, per-row options, two rows merging into one
// account), --parallel 4: every account is complete and the report says
// so; one row with a wrong password fails alone with a line that names the
// account and the server; the connections to one server never exceed
// --max-connections-per-host; a re-run retries only the failed row; --again
// runs every row and copies nothing twice.
func TestBatchTwentyAccounts(t *testing.T) {
	e := newBatchEnv(t, 20, 10, 12, 1)
	// Options per row.
	a2 := e.accounts[2]
	a2.options = "--map 'Archive=Old Archive'"
	a2.want["Old Archive"], a2.want["Archive"] = a2.want["Archive"], nil
	delete(a2.want, "Archive")
	a12 := e.accounts[12]
	a12.options = "--include INBOX"
	a12.total -= len(a12.want["Archive"])
	delete(a12.want, "Archive")
	// Rows 18 and 19 both merge into d19 on A (different sources): the
	// per-account cap counts them together.
	a18, a19 := e.accounts[18], e.accounts[19]
	a18.dst, a18.dstUser, a18.dstURL = a19.dst, a19.dstUser, a19.dstURL
	delete(a18.secrets, batch.ColDestinationPasswordEnv)
	a18.secrets[batch.ColDestinationPasswordFile] = filepath.Join(e.dir, "d19.merge.pw")
	os.WriteFile(a18.secrets[batch.ColDestinationPasswordFile], []byte(a19.dst.Password(a19.dstUser)), 0o600)
	for f, bodies := range a18.want {
		a19.want[f] = append(a19.want[f], bodies...)
		sort.Strings(a19.want[f])
	}
	a18.want = a19.want // both rows are checked against d19 as a whole
	// Row 5 (B -> A) has a wrong destination password.
	bad := e.accounts[5]
	badFile := filepath.Join(e.dir, "d5.wrong.pw")
	os.WriteFile(badFile, []byte("not-the-password\n"), 0o600)
	for k := range bad.secrets {
		if strings.HasPrefix(k, "destination_") {
			delete(bad.secrets, k)
		}
	}
	bad.secrets[batch.ColDestinationPasswordFile] = badFile
	file := e.writeCSV(t)
	reports := t.TempDir()

	ver := runMailhaul(t, nil, "--version")
	version := strings.TrimPrefix(strings.TrimSpace(ver.stdout), "mailhaul ")
	if ver.code != 0 || !strings.HasPrefix(ver.stdout, "mailhaul ") || !strings.Contains(version, "revision") {
		t.Fatalf("--version: exit %d %q", ver.code, ver.stdout)
	}

	r := runMailhaul(t, e.env, e.args(file, "--parallel", "4", "--max-connections-per-host", "6", "--report-dir", reports)...)
	if r.code != exitFatal {
		t.Fatalf("exit %d, want 1 (one account failed):\n%s", r.code, r.stderr)
	}
	rep := parseReport(t, r)
	if rep.Version != version || rep.Totals.Accounts != 20 || rep.Totals.Done != 19 || rep.Totals.Failed != 1 {
		t.Errorf("report: version %q (want %q), totals %+v", rep.Version, version, rep.Totals)
	}
	recs := byAccount(rep)
	for _, a := range e.accounts {
		rec := recs[a.name]
		if a == bad {
			if rec.Status != batch.Failed || rec.ExitCode != exitFatal || !strings.Contains(rec.Reason, "d5") || !strings.Contains(rec.Reason, e.a.IMAPSAddr) ||
				!strings.Contains(strings.ToLower(rec.Reason), "auth") || strings.Contains(rec.Reason, "\n") {
				t.Errorf("wrong-password row: %+v", rec)
			}
			continue
		}
		if rec.Status != batch.Done || rec.ExitCode != 0 || rec.Copied != a.total || rec.Already != 0 || rec.Skipped != 0 || rec.Bytes <= 0 || rec.Version != version {
			t.Errorf("%s: %+v, want done with %d copied", a.name, rec, a.total)
		}
	}
	// A line per account as it finished, the failed one clear.
	finished := 0
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.HasPrefix(l, "[") && strings.Contains(l, "/20] ") {
			finished++
			if strings.Contains(l, "acct-05") {
				t.Logf("the failed account's line: %s", l)
				if !(strings.Contains(l, "FAILED") && strings.Contains(l, "(line 7)") && strings.Contains(l, "d5")) {
					t.Errorf("failure line: %q", l)
				}
			}
		}
	}
	if finished != 20 {
		t.Errorf("%d account lines, want 20:\n%s", finished, r.stderr)
	}
	if !strings.Contains(r.stderr, "ACCOUNT") || !strings.Contains(r.stderr, "mailhaul "+version) {
		t.Errorf("no table naming the version:\n%s", r.stderr)
	}
	// The CSV report.
	data, err := os.ReadFile(filepath.Join(reports, "batch-accounts.report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(rows) != 21 || rows[0][1] != "account" || rows[0][4] != "status" {
		t.Fatalf("CSV report (%v):\n%s", err, data)
	}
	for _, row := range rows[1:] {
		if row[len(row)-1] != version {
			t.Errorf("CSV row without the version: %q", row)
		}
	}
	if _, err := os.Stat(filepath.Join(reports, "batch-accounts.report.json")); err != nil {
		t.Error(err)
	}
	e.check(t, func(a *batchAccount) bool { return a != bad })
	if got := imapBodies(t, bad.dst, bad.dstUser); len(got) != 0 {
		t.Errorf("failed account received %d folders", len(got))
	}
	if m := e.bProxy.Max(); m > 6 || m == 0 {
		t.Errorf("%d connections to B at once, --max-connections-per-host 6", m)
	}
	t.Logf("at most %d connections to B at once, %d in all", e.bProxy.Max(), e.bProxy.Total())

	// The password is fixed: a re-run copies only that account.
	os.WriteFile(badFile, []byte(bad.dst.Password(bad.dstUser)+"\n"), 0o600)
	r = runMailhaul(t, e.env, e.args(file, "--parallel", "4", "--max-connections-per-host", "6", "--report-dir", reports)...)
	if r.code != 0 {
		t.Fatalf("re-run: exit %d:\n%s", r.code, r.stderr)
	}
	recs = byAccount(parseReport(t, r))
	for _, a := range e.accounts {
		rec := recs[a.name]
		wantAttempts := 1
		if a == bad {
			wantAttempts = 2
		}
		if rec.Status != batch.Done || rec.Attempts != wantAttempts || rec.Copied != a.total {
			t.Errorf("re-run %s: %+v (want attempt %d)", a.name, rec, wantAttempts)
		}
	}
	if !strings.Contains(r.stderr, "19 of 20 accounts were done by an earlier run") {
		t.Errorf("re-run does not say it kept the done accounts:\n%s", r.stderr)
	}
	e.check(t, nil)

	// --again runs every account: nothing new, nothing copied twice.
	r = runMailhaul(t, e.env, e.args(file, "--again", "--parallel", "4", "--max-connections-per-host", "6")...)
	if r.code != 0 {
		t.Fatalf("--again: exit %d:\n%s", r.code, r.stderr)
	}
	for _, a := range e.accounts {
		if rec := byAccount(parseReport(t, r))[a.name]; rec.Copied != 0 || rec.Already != a.total || rec.Attempts < 2 {
			t.Errorf("--again %s: %+v, want 0 copied, %d already there", a.name, rec, a.total)
		}
	}
	e.check(t, nil)
}

// TestBatchLocked: a second batch on the same state refuses to run while
// the first holds it (the first is stuck dialling a server that never
// greets, so it holds the state for as long as the test needs).
func TestBatchLocked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never greets
		}
	}()
	dir, state := t.TempDir(), t.TempDir()
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("x"), 0o600)
	file := filepath.Join(dir, "list.csv")
	os.WriteFile(file, []byte("source,destination,destination_password_file\nmaildir:"+dir+"/src,imap://u@"+ln.Addr().String()+","+pw+"\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "src", "cur"), 0o755)
	first, se := startMailhaul(t, nil, "batch", "--insecure-plaintext", "--state-dir", state, file)
	defer first.Process.Kill()
	statePath := batch.StatePath(state, "list", batch.Shard{})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, recs, live, err := batch.Load(statePath); err == nil && live && len(recs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first batch never recorded its account:\n%s", se)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := runMailhaul(t, nil, "batch", "--insecure-plaintext", "--state-dir", state, file)
	if r.code != exitFatal || !strings.Contains(r.stderr, "another mailhaul batch is using this batch state") || !strings.Contains(r.stderr, fmt.Sprintf("pid %d", first.Process.Pid)) {
		t.Fatalf("second batch: exit %d:\n%s", r.code, r.stderr)
	}
	// A report can be read meanwhile, and says the account is running.
	r = runMailhaul(t, nil, "batch", "--json", "--report-only", "--state-dir", state, file)
	if rep := parseReport(t, r); r.code != exitFatal || rep.Totals.Running != 1 || !rep.States[0].Live {
		t.Errorf("report while running: exit %d %+v\n%s", r.code, rep.Totals, r.stderr)
	}
}

// countingProxy forwards TCP connections to an IMAP server and counts how
// many are open at once. A connection counts from its accept until the
// client sends LOGOUT (or it closes): mailhaul's LOGOUT waits for the
// server's reply, which passes through this proxy after the LOGOUT was
// counted, so the count can never lag behind a connection that mailhaul
// already replaced (the accounting is exact, not timing-dependent).
type countingProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cur    int
	max    int
	total  int
	wg     sync.WaitGroup
}

func startCountingProxy(target string) (*countingProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *countingProxy) Addr() string { return p.ln.Addr().String() }

func (p *countingProxy) Max() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.max
}

func (p *countingProxy) Total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

func (p *countingProxy) Close() {
	p.ln.Close()
	p.wg.Wait()
}

func (p *countingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.cur++
		p.total++
		p.max = max(p.max, p.cur)
		p.mu.Unlock()
		var once sync.Once
		end := func() {
			once.Do(func() {
				p.mu.Lock()
				p.cur--
				p.mu.Unlock()
			})
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			end()
			continue
		}
		go func() {
			io.Copy(c, s)
			c.Close()
		}()
		go func() {
			defer s.Close()
			defer end()
			buf := make([]byte, 32<<10)
			var tail []byte
			for {
				n, err := c.Read(buf)
				if n > 0 {
					look := append(tail, buf[:n]...)
					if bytes.Contains(bytes.ToUpper(look), []byte(" LOGOUT\r\n")) {
						end()
					}
					tail = append([]byte{}, look[max(0, len(look)-16):]...)
					if _, werr := s.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
