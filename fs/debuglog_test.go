package fs

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDebugLogShowsNoPayload: with Debug on, go-fuse logs every request
// and reply, and quotes the first bytes of a request's or a reply's data.
// A key written into .ctl/rotate (here a bare key, as an operator might
// paste one by mistake), an extended attribute's value and a snapshot
// file's plaintext (pushed into the kernel's cache or read) must not reach
// the log; the requests themselves still do.
func TestDebugLogShowsNoPayload(t *testing.T) {
	// Each secret is drawn from an alphabet of its own, so that six of its
	// letters in a row anywhere in the log can only come from it.
	const keyLetters, dataLetters = "abcdef", "qjxzvk"
	f := newFixture(t)
	files := map[string]string{"big": letters(dataLetters, 3<<20)}
	for i := range 6 { // a walk stores some of them ahead (mount.walked)
		files[fmt.Sprintf("small%d", i)] = letters(dataLetters, 32)
	}
	for name, content := range files {
		f.write(name, []byte(content))
	}
	f.snapshot("s")
	c := &controller{}
	f.mount(Options{Rotation: c, Debug: true})
	if _, err := os.ReadDir(f.path("snapshots", "s")); err != nil { // as a walk does
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		got, err := os.ReadFile(f.path("snapshots", "s", name))
		if err != nil || string(got) != files[name] {
			t.Fatalf("read %s: %d bytes, %v", name, len(got), err)
		}
	}

	// The kernel now opens without OPEN: the key goes through its cache.
	secret := letters(keyLetters, 64) // a key in hex
	if err := os.WriteFile(f.path(".ctl", "rotate"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if len(c.lines) != 1 || c.lines[0] != "rotate:"+secret {
		t.Errorf("the controller was not handed the line written: %d lines", len(c.lines))
	}
	c.mu.Unlock()
	// The mount has no extended attributes: the call fails, but its value
	// reaches the server first.
	unix.Setxattr(f.path(".ctl", "rotate"), "user.k", []byte(letters(dataLetters, 32)), 0)

	for _, op := range []string{": WRITE ", ": SETXATTR ", ": READ ", "NOTIFY_STORE_CACHE"} {
		if len(f.logs.matching(op)) == 0 {
			t.Errorf("no %q in the debug log: is Debug on?", op)
		}
	}
	f.logs.mu.Lock()
	defer f.logs.mu.Unlock()
	for _, set := range []string{keyLetters, dataLetters} {
		re := regexp.MustCompile("[" + set + "]{6}")
		for _, line := range f.logs.lines {
			if re.MatchString(line) {
				t.Errorf("a payload reached the log: %s", line)
			}
		}
	}
	if t.Failed() {
		t.Logf("the log:\n%s", strings.Join(f.logs.lines, "\n"))
	}
}

// letters returns n bytes drawn at random from set.
func letters(set string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = set[rand.IntN(len(set))]
	}
	return string(b)
}

// TestRedactPayload: each kind of line go-fuse's debug output writes, with
// what must go and what must stay.
func TestRedactPayload(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`rx 26: WRITE n3 {Fh 1 [0 +65) L 7 WRONLY}"abcdef01"... 65b p9`,
			`rx 26: WRITE n3 {Fh 1 [0 +65) L 7 WRONLY}(not shown) 65b p9`},
		{`rx 26: WRITE n3 {Fh 1 [0 +3) L 7 WRONLY}"ab\"" 3b p9`,
			`rx 26: WRITE n3 {Fh 1 [0 +3) L 7 WRONLY}(not shown) 3b p9`},
		{`rx 26: WRITE n3 {Fh 1 [0 +9) L 7 WRONLY} 9b in 2 segments p9`,
			`rx 26: WRITE n3 {Fh 1 [0 +9) L 7 WRONLY} 9b in 2 segments p9`},
		{`rx 32: SETXATTR n3 {sz 32 f0} "user.\"k" "value\x00x"... 32b p9`,
			`rx 32: SETXATTR n3 {sz 32 f0} "user.\"k" (not shown) 32b p9`},
		{`rx 18: LOOKUP n2  "rotate"  p9`, `rx 18: LOOKUP n2  "rotate"  p9`},
		{`rx 18: RENAME n2 {i1 0} "a" "b" p9`, `rx 18: RENAME n2 {i1 0} "a" "b" p9`},
		{`rx 5: opcode 99 n2 {} "secret!!"... 9b p9`, `rx 5: opcode 99 n2 {} (not shown) 9b p9`},
		{`rx 5: WRITE n3 {} "unterminated`, `rx 5: WRITE n3 {} (not shown)`},
		{`tx 48:     OK,  1048576b data "plaintex"...`, `tx 48:     OK,  1048576b data (not shown)`},
		{`tx 0:     NOTIFY_STORE_CACHE, {n6 [0 +32)} 32b data "plaintex"...`,
			`tx 0:     NOTIFY_STORE_CACHE, {n6 [0 +32)} 32b data (not shown)`},
		{`tx 48:     OK,  4096b data (2 slices)`, `tx 48:     OK,  4096b data (2 slices)`},
		{`tx 9:     OK, {} "link-target"`, `tx 9:     OK, {} "link-target"`},
		{`mount: magic mountpoint "/m", using fd 3`, `mount: magic mountpoint "/m", using fd 3`},
	} {
		if got := redactPayload(c.in); got != c.want {
			t.Errorf("redactPayload(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
}
