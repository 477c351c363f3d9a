package exclude

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// ReadPatterns reads a pattern file: one pattern a line; blank lines and
// lines starting with '#' are skipped; a trailing "\r" is dropped. It
// returns the patterns in order.
func ReadPatterns(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := string(bytes.TrimSuffix(sc.Bytes(), []byte("\r")))
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// ReadPatternFile is ReadPatterns of the named file.
func ReadPatternFile(name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("exclude file: %w", err)
	}
	defer f.Close()
	ps, err := ReadPatterns(f)
	if err != nil {
		return nil, fmt.Errorf("exclude file %s: %w", name, err)
	}
	return ps, nil
}
