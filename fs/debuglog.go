package fs

import (
	"strconv"
	"strings"
)

// go-fuse's debug output (Options.Debug) logs one line per request
// ("rx UNIQUE: OP nNODE {in} NAMES PAYLOAD pPID") and per reply or
// notification ("tx UNIQUE:     STATUS, {out} Nb data PAYLOAD"), and
// quotes the first 8 bytes of the data each carries: a WRITE's data (a
// key spec written into .ctl/rotate, or a key pasted there by mistake), a
// SETXATTR's value, a READ's or a cache notification's plaintext. The
// logger Mount gives go-fuse passes every line through redactPayload, so
// that the log keeps the requests, their file names and their sizes, and
// never a byte of their data.

// notShown replaces a quoted payload in a debug line.
const notShown = "(not shown)"

// namedOps are the requests that carry file names before their payload,
// and how many: go-fuse quotes each (fuse/opcode.go, the FileNames
// counts). A request not named here has none, so everything it quotes is
// payload.
var namedOps = map[string]int{
	"CREATE": 1, "TMPFILE": 1, "SETXATTR": 1, "GETXATTR": 1, "LINK": 1,
	"LOOKUP": 1, "MKDIR": 1, "MKNOD": 1, "REMOVEXATTR": 1, "RMDIR": 1,
	"UNLINK": 1, "RENAME": 2, "RENAME2": 2, "SYMLINK": 2,
}

// redactPayload returns a line of go-fuse's debug output without the
// bytes of payload it quotes: in a request's line, every quoted string
// after the request's file names; in a reply's line, the quoted string
// after "Nb data". Other lines come back unchanged.
func redactPayload(line string) string {
	switch {
	case strings.HasPrefix(line, "rx "):
		// "rx UNIQUE: OP ..."
		f := strings.SplitN(line, " ", 4)
		if len(f) < 4 {
			return line
		}
		return redactQuoted(line, len(f[0])+len(f[1])+len(f[2])+2, namedOps[f[2]])
	case strings.HasPrefix(line, "tx "):
		i := strings.Index(line, "b data \"")
		if i < 0 {
			return line
		}
		return redactQuoted(line, i, 0)
	}
	return line
}

// redactQuoted returns line with each Go-quoted string from index from on
// replaced by notShown (with the "..." go-fuse writes after a cut one),
// except the first keep of them.
func redactQuoted(line string, from, keep int) string {
	var b strings.Builder
	b.WriteString(line[:from])
	rest := line[from:]
	for {
		i := strings.IndexByte(rest, '"')
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		q, err := strconv.QuotedPrefix(rest[i:])
		if err != nil {
			// Not go-fuse's quoting: show nothing after it.
			b.WriteString(notShown)
			return b.String()
		}
		rest = rest[i+len(q):]
		if keep > 0 {
			keep--
			b.WriteString(q)
			continue
		}
		b.WriteString(notShown)
		rest = strings.TrimPrefix(rest, "...")
	}
}
