package migrate

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"testing"
)

// TestBufClasses: a buffer handed out holds what was asked, at most a
// quarter more (above the smallest class), and a buffer given back goes to
// a class whose every buffer it can serve.
func TestBufClasses(t *testing.T) {
	if classOf(maxPooled) != len(bufClasses)-1 || classSize(len(bufClasses)-1) != maxPooled {
		t.Fatalf("last class %d (size %d), want %d (size %d)", classOf(maxPooled), classSize(classOf(maxPooled)), len(bufClasses)-1, maxPooled)
	}
	for n := 1; n <= maxPooled; n += 1 + n/97 {
		c := classOf(n)
		if size := classSize(c); size < n || (n > minPooled && size > n+n/4) {
			t.Fatalf("classOf(%d) = %d of size %d", n, c, size)
		}
		if c > 0 && classSize(c-1) >= n {
			t.Fatalf("classOf(%d) = %d, but class %d (size %d) holds it", n, c, c-1, classSize(c-1))
		}
		if b := getBuf(n); len(b) != 0 || cap(b) < n {
			t.Fatalf("getBuf(%d): len %d cap %d", n, len(b), cap(b))
		}
	}
	for _, n := range []int{minPooled, minPooled + 1, 7000, 1 << 20, 1<<20 + 12345, maxPooled} {
		putBuf(make([]byte, 5, n))
		for i := 0; i < 10; i++ {
			b := getBuf(n - n/8)
			if len(b) != 0 || cap(b) < n-n/8 {
				t.Fatalf("after putBuf of cap %d, getBuf(%d): len %d cap %d", n, n-n/8, len(b), cap(b))
			}
		}
	}
}

// TestSpoolReusesBuffers: bodies spooled one after another into reused
// buffers, from goroutines at once, each closed as soon as it is read
// back, are each exactly what was written — nothing of an earlier, larger
// body shows through, and a Reset for a retry gives nothing away.
func TestSpoolReusesBuffers(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				size := (i*7919 + g*104729) % 70000
				msg := bytes.Repeat([]byte{byte('a' + (i+g)%26)}, size)
				copy(msg, fmt.Sprintf("Message-ID: <%d.%d@x>\r\n\r\n", g, i))
				sp := NewSpool(1<<20, t.TempDir(), nil)
				if i%3 == 0 {
					sp.Expect(int64(size))
				}
				if i%5 == 0 {
					sp.Write(bytes.Repeat([]byte("x"), 9000))
					sp.Reset()
				}
				for p := msg; len(p) > 0; p = p[min(len(p), 3000):] {
					sp.Write(p[:min(len(p), 3000)])
				}
				b, err := sp.Finish()
				if err != nil {
					errs <- err
					return
				}
				got, _ := io.ReadAll(b.Reader())
				b.Close()
				b.Close() // a second Close gives nothing back again
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("goroutine %d body %d: %d bytes read back, %d written, equal %v", g, i, len(got), len(msg), bytes.Equal(got, msg))
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
