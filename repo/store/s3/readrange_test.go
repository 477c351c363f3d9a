package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/snapcrypt/snapcrypt/repo/store"
	"github.com/snapcrypt/snapcrypt/repo/store/retry"
	"github.com/snapcrypt/snapcrypt/repo/store/s3"
	"github.com/snapcrypt/snapcrypt/repo/store/s3/s3test"
	"github.com/snapcrypt/snapcrypt/repo/store/storetest"
)

// rangeReader is the optional method package repo reads ciphertext with.
type rangeReader interface {
	ReadRange(ctx context.Context, name string, off, length int64, buf []byte, direct bool) ([]byte, error)
}

// TestReadRange reads ranges into the caller's buffer, straight from the
// store and through the retry wrapper (as the command line has it).
func TestReadRange(t *testing.T) {
	srv := s3test.Start(t)
	srv.SetEnv(t)
	ctx := context.Background()
	s := open(t, srv, srv.NewPrefix())
	const size = 100 << 10
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	if err := s.Put(ctx, "data/obj", data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "data/empty", nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what        string
		name        string
		off, length int64
		room        int // len(buf)
		want        []byte
		err         error // nil: no error; errAny: any error
	}{
		{"whole object", "data/obj", 0, size, size, data, nil},
		{"whole object, room to spare", "data/obj", 0, size, size + 12<<10, data, nil},
		{"middle", "data/obj", 1000, 5000, 8000, data[1000:6000], nil},
		{"one byte", "data/obj", size - 1, 1, 1, data[size-1:], nil},
		{"runs past the end", "data/obj", size - 10, 100, 100, data[size-10:], nil},
		{"starts at the end", "data/obj", size, 10, 10, nil, nil},
		{"starts past the end", "data/obj", size + 100, 10, 10, nil, nil},
		{"zero length", "data/obj", 10, 0, 10, nil, nil},
		{"zero length, no buffer", "data/obj", 10, 0, 0, nil, nil},
		{"empty object", "data/empty", 0, 10, 10, nil, nil},
		{"missing", "data/missing", 0, 10, 10, nil, store.ErrNotExist},
		{"missing, zero length", "data/missing", 0, 0, 10, nil, store.ErrNotExist},
		{"buffer too small", "data/obj", 0, 100, 99, nil, errAny},
		{"negative offset", "data/obj", -1, 10, 10, nil, errAny},
		{"negative length", "data/obj", 0, -1, 10, nil, errAny},
		{"invalid name", "../x", 0, 10, 10, nil, store.ErrInvalidName},
	}
	for _, st := range []struct {
		what string
		s    rangeReader
	}{
		{"s3", s},
		{"retry", retry.New(s, retry.Options{Attempts: 2})},
	} {
		for _, c := range cases {
			for _, direct := range []bool{false, true} {
				buf := bytes.Repeat([]byte{0xAA}, c.room)
				got, err := st.s.ReadRange(ctx, c.name, c.off, c.length, buf, direct)
				switch {
				case c.err == nil && err != nil:
					t.Errorf("%s: %s: ReadRange(%s, %d, %d): %v", st.what, c.what, c.name, c.off, c.length, err)
				case c.err == errAny && err == nil, c.err != nil && c.err != errAny && !errors.Is(err, c.err):
					t.Errorf("%s: %s: ReadRange(%s, %d, %d) = %d bytes, %v; want error %v", st.what, c.what, c.name, c.off, c.length, len(got), err, c.err)
				case err == nil && !bytes.Equal(got, c.want):
					t.Errorf("%s: %s: ReadRange(%s, %d, %d) = %d bytes, want %d", st.what, c.what, c.name, c.off, c.length, len(got), len(c.want))
				case err == nil && (got == nil || !storetest.Inside(got, buf)):
					t.Errorf("%s: %s: ReadRange(%s, %d, %d) did not return a part of buf", st.what, c.what, c.name, c.off, c.length)
				}
			}
		}
	}
}

var errAny = errors.New("any error")

// rewriteRanged passes the answer to each ranged GET, with its body read,
// through a function, to make a server look broken in some way.
type rewriteRanged func(resp *http.Response, body []byte)

func (f rewriteRanged) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || req.Header.Get("Range") == "" || resp.StatusCode != http.StatusPartialContent {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Header = resp.Header.Clone()
	f(resp, body)
	return resp, nil
}

// setBody gives resp body and a Content-Length header of n bytes, or none
// for n < 0.
func setBody(resp *http.Response, body []byte, n int) {
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(n)
	resp.Header.Del("Content-Length")
	if n >= 0 {
		resp.Header.Set("Content-Length", strconv.Itoa(n))
	}
}

// TestReadRangeBrokenServers reads ranges from servers that ignore the
// Range header, send no Content-Length, or send a body shorter or longer
// than their Content-Length.
func TestReadRangeBrokenServers(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	cases := []struct {
		what        string
		rewrite     rewriteRanged
		off, length int64
		want        []byte // nil: an error
	}{
		{"range ignored", func(resp *http.Response, _ []byte) {
			// 200 with the whole object: only a range from the start works.
			resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
			resp.Header.Del("Content-Range")
			setBody(resp, data, len(data))
		}, 0, 100, data[:100]},
		{"no Content-Length", func(resp *http.Response, body []byte) {
			setBody(resp, body, -1)
		}, 1000, 100, data[1000:1100]},
		{"no Content-Length, object ends", func(resp *http.Response, body []byte) {
			setBody(resp, body, -1)
		}, int64(len(data)) - 10, 100, data[len(data)-10:]},
		{"no Content-Length, cut off", func(resp *http.Response, body []byte) {
			resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body[:50]), iotest.ErrReader(io.ErrUnexpectedEOF)))
			resp.ContentLength = -1
			resp.Header.Del("Content-Length")
		}, 1000, 100, nil},
		{"body shorter than Content-Length", func(resp *http.Response, body []byte) {
			setBody(resp, body[:50], len(body))
		}, 1000, 100, nil},
		{"body longer than Content-Length", func(resp *http.Response, body []byte) {
			setBody(resp, append(body, 'x'), len(body))
		}, int64(len(data)) - 10, 100, nil},
	}
	for _, c := range cases {
		cfg, err := s3.ParseURL(srv.URL(srv.NewPrefix()))
		if err != nil {
			t.Fatal(err)
		}
		cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
		cfg.Transport = c.rewrite
		s, err := s3.OpenConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, "obj", data); err != nil {
			t.Fatal(err)
		}
		for _, room := range []int{int(c.length), int(c.length) + 100} {
			got, err := s.ReadRange(ctx, "obj", c.off, c.length, make([]byte, room), false)
			switch {
			case c.want == nil && err == nil:
				t.Errorf("%s: ReadRange(%d, %d) into %d bytes = %d bytes, want an error", c.what, c.off, c.length, room, len(got))
			case c.want == nil && errors.Is(err, store.ErrNotExist):
				t.Errorf("%s: ReadRange(%d, %d): %v; must not wrap ErrNotExist", c.what, c.off, c.length, err)
			case c.want != nil && (err != nil || !bytes.Equal(got, c.want)):
				t.Errorf("%s: ReadRange(%d, %d) into %d bytes = %q, %v; want %q", c.what, c.off, c.length, room, got, err, c.want)
			}
		}
	}
}
