package s3

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
)

// Large reads go on: a ReadRange of at least streamMin bytes, or of any
// size that starts where a kept body is, asks the server for the rest of
// the object rather than the range, reads the range from the body and
// keeps the body; a later ReadRange of the object that starts where it
// ended reads on from that body instead of sending a request. A
// sequential reader through the mount (the engine's read windows of 4 MiB,
// in order) so makes about one GET per pack instead of one per window. A
// read that starts within the first wholeMax bytes sends no Range header
// at all (the bytes before off are read and dropped): a whole-object GET
// is what servers serve most cheaply (Versity Gateway answers it with
// sendfile, a range by copying through its own buffers: four times the
// CPU per byte, docs/bench.md).
//
// A ReadRange that starts where one in flight will end waits for that one
// and reads on from its body; one that starts up to aheadMax past a kept
// body or a read in flight waits up to streamWait for the read between
// (the kernel sends a sequential reader's requests in parallel, not always
// in order). At most maxStreams bodies are kept, the least recently used
// closed first, and a body not read on for streamIdle is closed. A body
// that fails to read on (the server or a proxy dropped the connection
// meanwhile) is closed and the range read with a GET of its own.
const (
	streamMin  = 1 << 20
	wholeMax   = 64 << 10
	maxStreams = 8
	streamIdle = 10 * time.Second
	aheadMax   = 16 << 20
	streamWait = 50 * time.Millisecond
)

// streamKey is a body of object name whose next byte is off.
type streamKey struct {
	name string
	off  int64
}

// stream is an open GET body of an object from key.off to its end.
type stream struct {
	key  streamKey
	body io.ReadCloser
	left int64 // bytes of the body not yet read
	idle *time.Timer
}

// streams holds the open bodies of a Store.
type streams struct {
	mu    sync.Mutex
	idle  map[streamKey]*stream       // bodies to read on from
	order []*stream                   // idle bodies, least recently used first
	busy  map[streamKey]chan struct{} // reads in flight, by where they will end
	moved chan struct{}               // closed when a body is kept or a read ends
}

// take returns the idle body at k, taking it out of s, or nil. When a
// read in flight will end at k, it waits for that read first. When a body
// of the object is open or being read at most aheadMax bytes before k, it
// waits up to streamWait for it to reach k: a sequential reader's requests
// come in parallel and not always in order, and the one for the bytes
// between is most likely on its way.
func (s *streams) take(ctx context.Context, k streamKey) (*stream, error) {
	var deadline <-chan time.Time
	s.mu.Lock()
	for {
		if st := s.idle[k]; st != nil {
			s.unlist(st)
			s.mu.Unlock()
			st.idle.Stop()
			return st, nil
		}
		wait := s.busy[k]
		if wait == nil && s.behind(k) {
			if deadline == nil {
				t := time.NewTimer(streamWait)
				defer t.Stop()
				deadline = t.C
			}
			if s.moved == nil {
				s.moved = make(chan struct{})
			}
			wait = s.moved
		}
		s.mu.Unlock()
		if wait == nil {
			return nil, nil
		}
		select {
		case <-wait:
		case <-deadline:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
}

// at tells whether a body of k.name is idle at k.off, or a read in flight
// will leave one there.
func (s *streams) at(k streamKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idle[k] != nil || s.busy[k] != nil
}

// behind tells whether a body of k.name is idle or being read at most
// aheadMax bytes before k.off. s.mu is held.
func (s *streams) behind(k streamKey) bool {
	near := func(o streamKey) bool { return o.name == k.name && o.off < k.off && k.off-o.off <= aheadMax }
	for _, st := range s.order {
		if near(st.key) {
			return true
		}
	}
	for o := range s.busy {
		if near(o) {
			return true
		}
	}
	return false
}

// wake tells the readers waiting in take that a body moved. s.mu is held.
func (s *streams) wake() {
	if s.moved != nil {
		close(s.moved)
		s.moved = nil
	}
}

// claim marks a read in flight that will end at k, for take to wait for;
// release ends the claim. When another read already claimed k, it keeps
// its claim and release does nothing.
func (s *streams) claim(k streamKey) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy == nil {
		s.busy = map[streamKey]chan struct{}{}
	}
	if _, ok := s.busy[k]; ok {
		return func() {}
	}
	done := make(chan struct{})
	s.busy[k] = done
	return func() {
		s.mu.Lock()
		delete(s.busy, k)
		s.wake()
		s.mu.Unlock()
		close(done)
	}
}

// keep makes st idle, to be read on from st.key, closing the least
// recently used idle body beyond maxStreams; a body with nothing left,
// or one at a key another idle body holds, is closed.
func (s *streams) keep(st *stream) {
	if st.left <= 0 {
		st.body.Close()
		return
	}
	s.mu.Lock()
	if s.idle == nil {
		s.idle = map[streamKey]*stream{}
	}
	if s.idle[st.key] != nil {
		s.mu.Unlock()
		st.body.Close()
		return
	}
	s.idle[st.key] = st
	s.order = append(s.order, st)
	s.wake()
	var drop *stream
	if len(s.order) > maxStreams {
		drop = s.order[0]
		s.unlist(drop)
	}
	s.mu.Unlock()
	if drop != nil {
		drop.idle.Stop()
		drop.body.Close()
	}
	if st.idle == nil {
		st.idle = time.AfterFunc(streamIdle, func() { s.expire(st) })
	} else {
		st.idle.Reset(streamIdle)
	}
}

// expire closes st if it is still idle.
func (s *streams) expire(st *stream) {
	s.mu.Lock()
	ok := s.idle[st.key] == st
	if ok {
		s.unlist(st)
	}
	s.mu.Unlock()
	if ok {
		st.body.Close()
	}
}

// unlist takes st out of the idle bodies. s.mu is held.
func (s *streams) unlist(st *stream) {
	delete(s.idle, st.key)
	for i, x := range s.order {
		if x == st {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

// forget closes the idle bodies of the named object: it is being
// replaced or deleted.
func (s *streams) forget(name string) {
	var drop []*stream
	s.mu.Lock()
	for _, st := range s.order {
		if st.key.name == name {
			drop = append(drop, st)
		}
	}
	for _, st := range drop {
		s.unlist(st)
	}
	s.mu.Unlock()
	for _, st := range drop {
		st.idle.Stop()
		st.body.Close()
	}
}

// readOn reads length bytes of the named object from off into buf (fewer
// where the object ends first), reading on from an open body where there
// is one at off, and keeping the body open after (see streamMin).
func (s *Store) readOn(ctx context.Context, name string, off int64, buf []byte, length int) (int, error) {
	st, err := s.streams.take(ctx, streamKey{name, off})
	if err != nil {
		return 0, err
	}
	release := s.streams.claim(streamKey{name, off + int64(length)})
	defer release()
	if st != nil {
		n, err := st.read(buf[:length])
		if err == nil {
			s.streams.keep(st)
			return n, nil
		}
		st.body.Close() // a stale body: read the range afresh
	}
	st, err = s.openStream(ctx, name, off)
	if err != nil || st == nil {
		return 0, err
	}
	n, err := st.read(buf[:length])
	if err != nil {
		st.body.Close()
		return 0, s.mapErr(err)
	}
	s.streams.keep(st)
	return n, nil
}

// read reads len(p) bytes of st into p, fewer where the body ends, and
// moves st.key on.
func (st *stream) read(p []byte) (int, error) {
	n := int(min(int64(len(p)), st.left))
	if _, err := io.ReadFull(st.body, p[:n]); err != nil {
		return 0, err
	}
	st.left -= int64(n)
	st.key.off += int64(n)
	return n, nil
}

// openStream GETs the named object from off to its end (the whole object,
// without a Range header, when off is below wholeMax) and returns its
// body at off, or nil when the object ends at or before off.
func (s *Store) openStream(ctx context.Context, name string, off int64) (*stream, error) {
	var opts minio.GetObjectOptions
	if off >= wholeMax {
		opts.SetRange(off, 0) // bytes=off-
	}
	// The body outlives this call, for later reads by other callers: its
	// request must not end with this caller's context. (A stalled body
	// still fails after Config.Timeout.)
	body, info, hdr, err := s.core.GetObject(context.WithoutCancel(ctx), s.bucket, s.key(name), opts)
	if isCode(err, "InvalidRange") {
		return nil, nil // the object ends before off
	}
	if err != nil {
		return nil, s.mapErr(err)
	}
	// Where the body starts: a server may ignore the range (200 and the
	// whole object).
	start, size := int64(0), info.Size
	cr := hdr.Get("Content-Range")
	if cr != "" {
		start, size, err = parseContentRange(cr)
		if err != nil {
			body.Close()
			return nil, err
		}
	}
	if info.Size < 0 || start > off || start+info.Size != size {
		body.Close()
		return nil, fmt.Errorf("a GET from %d answered with Content-Range %q and Content-Length %d", off, cr, info.Size)
	}
	if off >= size {
		body.Close()
		return nil, nil
	}
	if _, err := io.CopyN(io.Discard, body, off-start); err != nil {
		body.Close()
		return nil, s.mapErr(err)
	}
	return &stream{key: streamKey{name, off}, body: body, left: size - off}, nil
}

// parseContentRange parses "bytes FIRST-LAST/SIZE" into FIRST and SIZE.
func parseContentRange(v string) (start, size int64, err error) {
	rng, ok := strings.CutPrefix(v, "bytes ")
	first, rest, ok2 := strings.Cut(rng, "-")
	_, total, ok3 := strings.Cut(rest, "/")
	if ok && ok2 && ok3 {
		start, err1 := strconv.ParseInt(first, 10, 64)
		size, err2 := strconv.ParseInt(total, 10, 64)
		if err1 == nil && err2 == nil && start >= 0 && size >= 0 {
			return start, size, nil
		}
	}
	return 0, 0, fmt.Errorf("malformed Content-Range %q", v)
}
