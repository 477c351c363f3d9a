package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// progressState is what snapshot and restore report as they go.
type progressState struct {
	Files, Bytes uint64 // done so far
	// TotalFiles and TotalBytes are known once a pre-scan has ended.
	TotalFiles, TotalBytes uint64
	TotalKnown             bool
	// Rate is bytes read (snapshot) or written (restore) per second.
	Rate    float64
	Elapsed time.Duration
	Current string
}

// progressJSON is one line of --json output.
type progressJSON struct {
	MessageType      string   `json:"message_type"` // "status"
	SecondsElapsed   float64  `json:"seconds_elapsed"`
	FilesDone        uint64   `json:"files_done"`
	BytesDone        uint64   `json:"bytes_done"`
	TotalFiles       *uint64  `json:"total_files,omitempty"`
	TotalBytes       *uint64  `json:"total_bytes,omitempty"`
	PercentDone      *float64 `json:"percent_done,omitempty"`
	SecondsRemaining *float64 `json:"seconds_remaining,omitempty"`
	BytesPerSecond   float64  `json:"bytes_per_second"`
	Current          string   `json:"current,omitempty"`
}

// eta is the time left at the current pace, once the total is known and
// some bytes are done.
func (s progressState) eta() (time.Duration, bool) {
	if !s.TotalKnown || s.Bytes == 0 || s.Elapsed <= 0 {
		return 0, false
	}
	if s.Bytes >= s.TotalBytes {
		return 0, true
	}
	left := float64(s.TotalBytes-s.Bytes) / float64(s.Bytes) * float64(s.Elapsed)
	return time.Duration(left), true
}

// reporter shows progress: a line redrawn in place on a terminal, or one
// JSON object a line. A nil *reporter shows nothing. Safe for concurrent
// use (the pre-scan sets the totals from its own goroutine).
type reporter struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	width func() int // terminal columns; nil means 80
	last  int        // length of the last line drawn
	// totals from the pre-scan
	totalFiles, totalBytes uint64
	totalKnown             bool
}

func (r *reporter) setTotals(files, bytes uint64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.totalFiles, r.totalBytes, r.totalKnown = files, bytes, true
	r.mu.Unlock()
}

// show draws s (its totals taken from the pre-scan, if it has ended).
func (r *reporter) show(s progressState) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.totalKnown {
		s.TotalFiles, s.TotalBytes, s.TotalKnown = r.totalFiles, r.totalBytes, true
		// Files grow while they are read: the total is at least what is done.
		s.TotalFiles = max(s.TotalFiles, s.Files)
		s.TotalBytes = max(s.TotalBytes, s.Bytes)
	}
	if r.json {
		j := progressJSON{MessageType: "status", SecondsElapsed: s.Elapsed.Seconds(), FilesDone: s.Files, BytesDone: s.Bytes,
			BytesPerSecond: s.Rate, Current: s.Current}
		if s.TotalKnown {
			j.TotalFiles, j.TotalBytes = &s.TotalFiles, &s.TotalBytes
			pct := 100.0
			if s.TotalBytes > 0 {
				pct = 100 * float64(s.Bytes) / float64(s.TotalBytes)
			}
			j.PercentDone = &pct
			if eta, ok := s.eta(); ok {
				sec := eta.Seconds()
				j.SecondsRemaining = &sec
			}
		}
		json.NewEncoder(r.w).Encode(j)
		return
	}
	width := 80
	if r.width != nil {
		if w := r.width(); w > 0 {
			width = w
		}
	}
	line := renderLine(s, width-1)
	pad := ""
	if n := utf8.RuneCountInString(line); n < r.last {
		pad = strings.Repeat(" ", r.last-n)
	}
	fmt.Fprintf(r.w, "\r%s%s", line, pad)
	r.last = utf8.RuneCountInString(line)
}

// finish ends the line drawn on a terminal.
func (r *reporter) finish() {
	if r == nil || r.json {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clear()
}

func (r *reporter) clear() {
	if r.last > 0 {
		fmt.Fprintf(r.w, "\r%s\r", strings.Repeat(" ", r.last))
		r.last = 0
	}
}

// println prints a message line to w, clearing the progress line first
// (the next show draws it again). A nil reporter prints to w alone.
func (r *reporter) println(w io.Writer, a ...any) {
	if r == nil || r.json {
		fmt.Fprintln(w, a...)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clear()
	fmt.Fprintln(w, a...)
}

// renderLine is the terminal line: elapsed time, files and bytes (of the
// totals once known, with a percentage and an ETA), rate, and as much of
// the current path's end as fits in width columns.
func renderLine(s progressState, width int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] ", clock(s.Elapsed))
	if s.TotalKnown {
		pct := 100.0
		if s.TotalBytes > 0 {
			pct = 100 * float64(s.Bytes) / float64(s.TotalBytes)
		}
		fmt.Fprintf(&b, "%5.1f%%  %d / %d files  %s / %s", pct, s.Files, s.TotalFiles, bytesStr(s.Bytes), bytesStr(s.TotalBytes))
	} else {
		fmt.Fprintf(&b, "%d files  %s", s.Files, bytesStr(s.Bytes))
	}
	fmt.Fprintf(&b, "  %s/s", bytesStr(uint64(s.Rate)))
	if eta, ok := s.eta(); ok {
		fmt.Fprintf(&b, "  ETA %s", clock(eta))
	}
	line := b.String()
	if cur := s.Current; cur != "" {
		room := width - utf8.RuneCountInString(line) - 2
		if room >= 8 {
			cur = strings.ToValidUTF8(cur, "?")
			if n := utf8.RuneCountInString(cur); n > room {
				r := []rune(cur)
				cur = "…" + string(r[n-room+1:])
			}
			line += "  " + cur
		}
	}
	if r := []rune(line); len(r) > width && width > 0 {
		line = string(r[:width])
	}
	return line
}

// clock formats d as h:mm:ss, or m:ss under an hour.
func clock(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
