package imapconn

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/mailhaul/mailhaul/internal/testserver"
)

// TestMultiAppendDovecot stores batches through a real Dovecot and reads
// them back: bytes, flags, dates and the UIDs APPENDUID gave, in order;
// messages whose bytes look like protocol ("{7}", "+ OK", a tagged OK with
// APPENDUID) change nothing; a refused batch ([TRYCREATE]) stores nothing
// and leaves the connection usable; single APPENDs and FETCHes interleave
// on the same connection.
func TestMultiAppendDovecot(t *testing.T) {
	d := testserver.StartDovecot(t, testserver.WithUser("alice", "pw-alice-1"))
	host, port := splitAddr(t, d.IMAPSAddr)
	ctx := context.Background()
	trace := &syncBuf{}
	c, err := Dial(ctx, &Config{Endpoint: Endpoint{TLS: true, Host: host, Port: port, User: "alice"}, CAFile: d.CAFile, Password: "pw-alice-1", Trace: trace})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.CanMultiAppend() {
		t.Fatal("Dovecot offers MULTIAPPEND and LITERAL+, CanMultiAppend says no")
	}
	msgs := testMessages()
	msgs = append(msgs, []byte("Subject: looks like a reply\r\n\r\nT9 OK [APPENDUID 1 2:3] done\r\n* 3 FETCH (BODY[] {5}\r\n"))
	base := time.Date(2021, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	items := func(ms [][]byte) []MultiItem {
		var out []MultiItem
		for i, m := range ms {
			flags := []imap.Flag{imap.FlagSeen}
			if i%2 == 1 {
				flags = []imap.Flag{imap.FlagFlagged, "$Forwarded", "project-x"}
			}
			if i == 2 {
				flags = nil
			}
			out = append(out, MultiItem{Flags: flags, Date: base.Add(time.Duration(i) * time.Hour), Size: int64(len(m)), Body: bytes.NewReader(m)})
		}
		return out
	}
	if _, err := c.Select(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	var res MultiResult
	if err := c.Do(ctx, func() error { var err error; res, err = c.MultiAppend("INBOX", items(msgs)); return err }); err != nil {
		t.Fatal(err)
	}
	if len(res.UIDs) != len(msgs) || res.UIDValidity == 0 {
		t.Fatalf("result %+v for %d messages", res, len(msgs))
	}
	// A second batch, a single APPEND between, and another batch.
	var res2 MultiResult
	var single *imap.AppendData
	err = c.Do(ctx, func() error {
		cmd := c.Client.Append("INBOX", int64(len(msgs[0])), nil)
		cmd.Write(msgs[0])
		cmd.Close()
		var err error
		single, err = cmd.Wait()
		return err
	})
	if err != nil || single.UID != res.UIDs[len(res.UIDs)-1]+1 {
		t.Fatalf("single APPEND after a batch: %+v %v", single, err)
	}
	if err := c.Do(ctx, func() error { var err error; res2, err = c.MultiAppend("INBOX", items(msgs[:2])); return err }); err != nil {
		t.Fatal(err)
	}
	if len(res2.UIDs) != 2 || res2.UIDs[0] <= res.UIDs[len(res.UIDs)-1] {
		t.Fatalf("second batch: %+v after %+v", res2, res)
	}
	// Read everything back by UID.
	all := append(append([]imap.UID{}, res.UIDs...), res2.UIDs...)
	want := append(append([][]byte{}, msgs...), msgs[:2]...)
	wantItems := append(items(msgs), items(msgs[:2])...)
	sec := &imap.FetchItemBodySection{Peek: true}
	err = c.Do(ctx, func() error {
		got, err := c.Fetch(imap.UIDSetNum(all...), &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil {
			return err
		}
		byUID := map[imap.UID]int{}
		for k, u := range all {
			byUID[u] = k
		}
		if len(got) != len(all) {
			return fmt.Errorf("fetched %d messages, want %d", len(got), len(all))
		}
		for _, m := range got {
			k := byUID[m.UID]
			if !bytes.Equal(m.FindBodySection(sec), want[k]) {
				t.Errorf("UID %d (message %d): body differs", m.UID, k)
			}
			if !m.InternalDate.Equal(wantItems[k].Date) {
				t.Errorf("UID %d (message %d): date %v, want %v", m.UID, k, m.InternalDate, wantItems[k].Date)
			}
			var flags []imap.Flag
			for _, f := range m.Flags {
				if f != `\Recent` {
					flags = append(flags, f)
				}
			}
			if g, w := fmt.Sprint(flags), fmt.Sprint(wantItems[k].Flags); g != w {
				t.Errorf("UID %d (message %d): flags %s, want %s", m.UID, k, g, w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Pipelined: two goroutines' batches on the one connection, as the
	// sink's shared connections carry them, with single APPENDs between.
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				small := [][]byte{[]byte(fmt.Sprintf("Subject: %d %d a\r\n\r\nx\r\n", g, i)), []byte(fmt.Sprintf("Subject: %d %d b\r\n\r\ny\r\n", g, i)), msgs[1]}
				var r MultiResult
				err := c.Do(ctx, func() error { var err error; r, err = c.MultiAppend("INBOX", items(small)); return err })
				if err == nil && len(r.UIDs) != 3 {
					err = fmt.Errorf("batch %d/%d: UIDs %v", g, i, r.UIDs)
				}
				if err == nil && i%5 == 0 {
					err = c.Do(ctx, func() error {
						cmd := c.Client.Append("INBOX", int64(len(msgs[0])), nil)
						cmd.Write(msgs[0])
						cmd.Close()
						_, err := cmd.Wait()
						return err
					})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("pipelined batches: %v", err)
	}
	// A refused batch stores nothing; the connection goes on.
	err = c.Do(ctx, func() error { _, err := c.MultiAppend("no-such-folder", items(msgs[:3])); return err })
	if ie := IMAPError(err); ie == nil || ie.Code != imap.ResponseCodeTryCreate {
		t.Fatalf("batch to a missing folder: %v", err)
	}
	if err := c.Do(ctx, func() error { return c.Noop().Wait() }); err != nil {
		t.Fatalf("connection unusable after a refused batch: %v", err)
	}
	tr := trace.String()
	if !strings.Contains(tr, "[APPENDUID ") || !strings.Contains(tr, ":") || strings.Contains(tr, "X-Mailhaul-Multi") {
		t.Errorf("trace does not show the real exchange:\n%.3000s", tr)
	}
}

// TestMultiScanner: the reader hands every byte on unchanged (literals by
// count, also ones holding what looks like a completion) except the
// tagged completion of a pending MultiAppend, whatever the read sizes.
func TestMultiScanner(t *testing.T) {
	stream := "* 1 FETCH (BODY[] {31}\r\nT7 OK [APPENDUID 9 1:2] fake\r\n UID 4)\r\n" +
		"T6 OK text that ends like a literal {5}\r\n" +
		"+ mailhaul: LITERAL+\r\n" +
		"T7 OK [APPENDUID 38 101:103,105] Append completed.\r\n" +
		"T8 OK [APPENDUID 38 106] done\r\n"
	want := strings.Replace(stream, "T7 OK [APPENDUID 38 101:103,105]", "T7 OK [APPENDUID 38 105]", 1)
	for _, chunk := range []int{1, 2, 3, 7, 64, 4096} {
		var m multiState
		ma := &multiAppend{first: 10}
		m.register(1, ma)
		m.mu.Lock()
		m.byTag["T7"] = ma
		m.mu.Unlock()
		r := &chunkReader{s: stream, n: chunk}
		var out bytes.Buffer
		p := make([]byte, 5)
		for {
			n, err := m.read(r, p)
			out.Write(p[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if out.String() != want {
			t.Errorf("chunk %d: got\n%q\nwant\n%q", chunk, out.String(), want)
		}
		if fmt.Sprint(ma.uids) != "[101 102 103 105]" || ma.uidValidity != 38 {
			t.Errorf("chunk %d: kept %d %v", chunk, ma.uidValidity, ma.uids)
		}
	}
}

type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := min(r.n, len(p), len(r.s))
	copy(p, r.s[:k])
	r.s = r.s[k:]
	return k, nil
}

// TestRewriteMulti: the marker leaves the line, alone or after flags, and
// the literal size becomes the first message's.
func TestRewriteMulti(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{`T3 APPEND "INBOX" (\Seen \X-Mailhaul-Multi-4) "04-Mar-2021 05:06:07 +0100" {900}` + "\r\n", `T3 APPEND "INBOX" (\Seen) "04-Mar-2021 05:06:07 +0100" {12}` + "\r\n"},
		{`T3 APPEND INBOX (\X-Mailhaul-Multi-4) {900+}` + "\r\n", `T3 APPEND INBOX () {12+}` + "\r\n"},
		{`T3 APPEND INBOX (\X-Mailhaul-Multi-5) {900}` + "\r\n", `T3 APPEND INBOX (\X-Mailhaul-Multi-5) {900}` + "\r\n"}, // not registered
	} {
		var m multiState
		m.register(4, &multiAppend{first: 12})
		if got := string(m.rewriteMulti([]byte(tc.in))); got != tc.out {
			t.Errorf("%q:\n got %q\nwant %q", tc.in, got, tc.out)
		}
	}
}

func TestParseUIDList(t *testing.T) {
	for in, want := range map[string]string{"5": "[5]", "5:7": "[5 6 7]", "7:5": "[5 6 7]", "1,3:4": "[1 3 4]"} {
		got, err := parseUIDList(in)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "0", "a", "1:*", "1:4000000000"} {
		if _, err := parseUIDList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
