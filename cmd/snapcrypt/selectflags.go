package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/snapcrypt/snapcrypt/exclude"
	"github.com/snapcrypt/snapcrypt/repo"
)

// patternFlag appends to one ordered list of patterns, so that --exclude,
// --iexclude and --exclude-file keep their order on the command line (the
// last pattern that matches decides).
type patternFlag struct {
	list *[]repo.Pattern
	fold bool
	file bool
}

func (f patternFlag) Set(s string) error {
	ps := []string{s}
	if f.file {
		var err error
		if ps, err = exclude.ReadPatternFile(s); err != nil {
			return err
		}
	}
	for _, p := range ps {
		var m exclude.Matcher
		if err := m.Add(p, f.fold); err != nil {
			return err
		}
		*f.list = append(*f.list, repo.Pattern{Pattern: p, IgnoreCase: f.fold})
	}
	return nil
}

func (f patternFlag) String() string { return "" }
func (f patternFlag) Type() string {
	if f.file {
		return "FILE"
	}
	return "PATTERN"
}

type sizeFlag struct{ n *uint64 }

func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}

func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return ""
	}
	return fmt.Sprint(*f.n)
}
func (f sizeFlag) Type() string { return "SIZE" }

// snapshotFlags are the snapshot command's flags beyond name, tags, host
// and time.
type snapshotFlags struct {
	ex           repo.Exclusions
	stdin        bool
	stdinName    string
	stdinCommand bool
	quiet        bool
}

func (sf *snapshotFlags) setup(fs *pflag.FlagSet, c *cli) {
	fs.Var(patternFlag{list: &sf.ex.Patterns}, "exclude", "leave out paths matching PATTERN (gitignore syntax, see README; repeatable)")
	fs.Var(patternFlag{list: &sf.ex.Patterns, fold: true}, "iexclude", "like --exclude, ignoring case")
	fs.Var(patternFlag{list: &sf.ex.Patterns, file: true}, "exclude-file", "read --exclude patterns from FILE, one a line (# comments)")
	fs.BoolVar(&sf.ex.Caches, "exclude-caches", false, "leave out the contents of directories with a valid CACHEDIR.TAG (the tag is kept)")
	fs.StringArrayVar(&sf.ex.IfPresent, "exclude-if-present", nil, "leave out the contents of directories holding an entry NAME (it is kept; repeatable)")
	fs.Var(sizeFlag{&sf.ex.LargerThan}, "exclude-larger-than", "leave out files larger than SIZE (bytes, or with k, m, g, t)")
	fs.BoolVarP(&sf.ex.OneFileSystem, "one-file-system", "x", false, "do not cross file systems: mount points are kept empty")
	fs.BoolVar(&sf.stdin, "stdin", false, "snapshot standard input as one file (see --stdin-filename)")
	fs.StringVar(&sf.stdinName, "stdin-filename", "stdin", "file name for --stdin and --stdin-from-command")
	fs.BoolVar(&sf.stdinCommand, "stdin-from-command", false, "run the arguments as a command and snapshot its output; no snapshot if it fails")
	fs.BoolVar(&c.json, "json", false, "print status and a final summary as JSON objects, one a line, on stdout")
	fs.BoolVarP(&sf.quiet, "quiet", "q", false, "print only the snapshot id (and warnings and errors)")
}

// newReporter picks how progress shows: JSON lines on stdout with --json,
// a redrawn line when stderr is a terminal, else nothing (nil).
func newReporter(c *cli, quiet bool) *reporter {
	switch {
	case c.json:
		return &reporter{w: c.stdout, json: true}
	case quiet:
		return nil
	case isTerminal(c.stderr):
		fd := int(c.stderr.(*os.File).Fd())
		return &reporter{w: c.stderr, width: func() int {
			w, _, err := term.GetSize(fd)
			if err != nil {
				return 0
			}
			return w
		}}
	}
	return nil
}

func snapshotProgress(rep *reporter) func(repo.Progress) {
	return func(p repo.Progress) {
		el := time.Since(p.Start)
		rate := 0.0
		if el > 0 {
			rate = float64(p.ReadBytes) / el.Seconds()
		}
		rep.show(progressState{Files: p.Files, Bytes: p.Bytes, Rate: rate, Elapsed: el, Current: p.Current})
	}
}

// commandReader reads a command's standard output and, at its end, fails
// unless the command exited with status 0: a producer that dies midway
// makes no snapshot.
type commandReader struct {
	cmd *exec.Cmd
	out io.ReadCloser
	err error
}

func startCommand(ctx context.Context, args []string, stderr io.Writer) (*commandReader, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("--stdin-from-command: %w", err)
	}
	return &commandReader{cmd: cmd, out: out}, nil
}

func (r *commandReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.out.Read(p)
	if errors.Is(err, io.EOF) {
		r.err = io.EOF
		if werr := r.cmd.Wait(); werr != nil {
			r.err = fmt.Errorf("command %s failed: %w", strings.Join(r.cmd.Args, " "), werr)
		}
		return n, r.err
	}
	return n, err
}

// close stops the command if it still runs (a snapshot that failed).
func (r *commandReader) close() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
}

// snapshotSummary is the last line of snapshot --json.
type snapshotSummary struct {
	MessageType    string  `json:"message_type"` // "summary"
	SnapshotID     string  `json:"snapshot_id"`
	Files          uint64  `json:"files"`
	Dirs           uint64  `json:"dirs"`
	Bytes          uint64  `json:"bytes"`
	ReadBytes      uint64  `json:"read_bytes"`
	UnchangedFiles uint64  `json:"unchanged_files"`
	NewBlobs       uint64  `json:"new_blobs"`
	StoredBytes    int64   `json:"stored_bytes"`
	Excluded       uint64  `json:"excluded"`
	Warnings       int     `json:"warnings"`
	Seconds        float64 `json:"seconds"`
}

func restoreProgress(rep *reporter) func(repo.RestoreProgress) {
	return func(p repo.RestoreProgress) {
		el := time.Since(p.Start)
		rate := 0.0
		if el > 0 {
			rate = float64(p.Bytes) / el.Seconds()
		}
		rep.show(progressState{Files: p.Files, Bytes: p.Bytes, Rate: rate, Elapsed: el, Current: p.Current})
	}
}

// restoreSummary is the last line of restore --json.
type restoreSummary struct {
	MessageType string  `json:"message_type"` // "summary"
	SnapshotID  string  `json:"snapshot_id"`
	Files       uint64  `json:"files"`
	Dirs        uint64  `json:"dirs"`
	Symlinks    uint64  `json:"symlinks"`
	Hardlinks   uint64  `json:"hardlinks"`
	Bytes       uint64  `json:"bytes"`
	Warnings    int     `json:"warnings"`
	Seconds     float64 `json:"seconds"`
}
