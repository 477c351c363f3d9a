package keys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"
)

// CommandTimeoutEnv names the environment variable that sets how long a key
// command may run (a Go duration such as "45s" or "2m"); DefaultCommandTimeout
// applies when it is unset.
const CommandTimeoutEnv = "SNAPCRYPT_KEY_COMMAND_TIMEOUT"

// DefaultCommandTimeout is how long a key command may run unless
// CommandTimeoutEnv says otherwise.
const DefaultCommandTimeout = 30 * time.Second

// maxCommandOutput bounds what a key command may print on its standard
// output: a key or a passphrase is far shorter.
const maxCommandOutput = 4096

// Bounds on the standard error a key command's failure reports: the first
// maxStderrKept bytes are kept, and of them the first line, cut to
// maxStderrLine bytes.
const (
	maxStderrKept = 1024
	maxStderrLine = 200
)

// commandWaitDelay is how long a key command's pipes may stay open after it
// ended or was killed (held by a process that left its process group).
const commandWaitDelay = 2 * time.Second

// commandNotShown stands for the command line of a cmd: or passcmd: spec
// wherever a spec is shown: the line may carry a secret (a token, a
// passphrase written by mistake).
const commandNotShown = "[command not shown]"

// shellSpecial are the bytes a POSIX shell gives a meaning to anywhere in a
// word (operators, expansions, globs) and an unquoted newline, which ends a
// shell command. splitCommand refuses them unquoted.
const shellSpecial = "|&;<>()$`*?[\n"

// splitCommand splits a key command line into the program and its
// arguments, as a POSIX shell splits words, without any expansion:
//
//   - words are separated by unquoted spaces and tabs;
//   - 'single quotes' keep everything up to the next single quote;
//   - "double quotes" keep everything up to the next unescaped double
//     quote; inside them a backslash escapes only " \ $ ` and a newline
//     (a backslash before a newline removes both), any other backslash is
//     kept;
//   - outside quotes a backslash keeps the next byte as it is (a backslash
//     before a newline removes both);
//   - quotes join with what is next to them (a'b'"c" is the one word abc),
//     and a pair of quotes with nothing inside is an empty argument.
//
// What a shell would expand or treat as an operator is refused when it is
// unquoted (| & ; < > ( ) $ ` * ? [ and a newline anywhere, ~ and # at the
// start of a word), so an accepted line means what it means to sh, minus
// the shell. Unbalanced quotes, a trailing backslash and a line with no
// word are refused too. Errors name the problem and its byte offset, never
// the line.
func splitCommand(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("trailing backslash at byte %d", i)
			}
			i++
			if s[i] == '\n' {
				continue // line continuation
			}
			w.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unbalanced single quote at byte %d", i)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			open := i
			for i++; ; i++ {
				if i == len(s) {
					return nil, fmt.Errorf("unbalanced double quote at byte %d", open)
				}
				d := s[i]
				if d == '"' {
					break
				}
				if d == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
					d = s[i]
				}
				w.WriteByte(d)
			}
			inWord = true
		case strings.IndexByte(shellSpecial, c) >= 0, !inWord && (c == '~' || c == '#'):
			return nil, fmt.Errorf("unquoted %q at byte %d: snapcrypt runs no shell and expands nothing; quote it, or write cmd:sh -c '...'", c, i)
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	if len(words) == 0 {
		return nil, errors.New("no command")
	}
	return words, nil
}

// commandTimeout returns the key command timeout CommandTimeoutEnv sets, or
// DefaultCommandTimeout.
func commandTimeout() (time.Duration, error) {
	v, ok := os.LookupEnv(CommandTimeoutEnv)
	if !ok || v == "" {
		return DefaultCommandTimeout, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, badKey(nil, "%s=%q is not a positive duration (such as 30s or 2m)", CommandTimeoutEnv, v)
	}
	return d, nil
}

// loadCommand runs the command of a cmd: or passcmd: spec and returns what
// it printed. what names the spec in errors ("key command", "passphrase
// command").
func loadCommand(ctx context.Context, what, line string) ([]byte, error) {
	args, err := splitCommand(line)
	if err != nil {
		return nil, badKey(nil, "%s: %v", what, err)
	}
	timeout, err := commandTimeout()
	if err != nil {
		return nil, err
	}
	return runCommand(ctx, what, args, timeout)
}

// runCommand runs args (no shell) with the process's environment and
// working directory, standard input from /dev/null, in a process group of
// its own, and returns its standard output, which must be non-empty and at
// most maxCommandOutput bytes. It fails (an error wrapping ErrBadKey) when
// the command cannot start, exits with a non-zero status or a signal,
// prints nothing or too much, or outlives timeout or ctx; then the whole
// process group is killed (SIGKILL). An error gives the exit status and the
// first line of standard error (bounded), never standard output nor the
// command line.
func runCommand(ctx context.Context, what string, args []string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	startOwnGroup(cmd)
	cmd.Cancel = func() error { return killGroup(cmd.Process) }
	cmd.WaitDelay = commandWaitDelay
	// The buffer never grows, so no copy of the output is left behind.
	stdout := &boundedBuffer{buf: make([]byte, 0, maxCommandOutput), max: maxCommandOutput, overflow: cancel}
	stderr := &boundedBuffer{max: maxStderrKept}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	defer clear(stdout.buf[:cap(stdout.buf)])

	if err := cmd.Start(); err != nil {
		return nil, badKey(startCause(err), "%s: cannot start it: %v", what, startCause(err))
	}
	waitErr := cmd.Wait()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		// It ended, but something it started still holds its output.
		killGroup(cmd.Process)
	}
	status := "no exit status"
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.String() // "exit status 1", "signal: killed"
	}
	var problem string
	switch {
	case stdout.over:
		problem = fmt.Sprintf("printed more than %d bytes (killed, %s)", maxCommandOutput, status)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		problem = fmt.Sprintf("timed out after %v (killed, %s; set %s to allow longer)", timeout, status, CommandTimeoutEnv)
	case ctx.Err() != nil:
		problem = fmt.Sprintf("canceled (killed, %s)", status)
	case cmd.ProcessState == nil || !cmd.ProcessState.Success():
		problem = "failed: " + status
	case len(stdout.buf) == 0:
		problem = "printed nothing (" + status + ")"
	case waitErr != nil:
		problem = fmt.Sprintf("its output was not closed within %v of its end (%s)", commandWaitDelay, status)
	}
	if problem != "" {
		if l := firstLine(stderr.buf); l != "" {
			problem += fmt.Sprintf("; its standard error began %q", l)
		}
		return nil, badKey(nil, "%s %s", what, problem)
	}
	return bytes.Clone(stdout.buf), nil
}

// startCause is what to say when a command cannot start: the cause without
// the program's name or path (which is part of the command line).
func startCause(err error) error {
	var ee *exec.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ee):
		return ee.Err
	case errors.As(err, &pe):
		return pe.Err
	}
	return errors.New("unknown error")
}

// firstLine returns the first line of b, invalid UTF-8 replaced, cut to
// maxStderrLine bytes on a rune boundary.
func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimRight(b, "\r")
	if len(b) > maxStderrLine {
		b = b[:maxStderrLine]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// boundedBuffer keeps the first max bytes written to it. Past max it
// discards what comes, reports over and, if overflow is set, calls it once
// and fails the write (so a command's output is not read further); without
// overflow it accepts and drops the rest, so a chatty command never blocks.
type boundedBuffer struct {
	buf      []byte
	max      int
	over     bool
	overflow func()
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if len(p) <= room {
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	b.buf = append(b.buf, p[:max(room, 0)]...)
	if b.overflow == nil {
		return len(p), nil
	}
	if !b.over {
		b.over = true
		b.overflow()
	}
	return 0, errors.New("output too large")
}
