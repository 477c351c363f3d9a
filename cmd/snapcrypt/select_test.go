package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// scIn runs the binary with stdin.
func scIn(t *testing.T, env []string, stdin *os.File, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(append(os.Environ(), "SNAPCRYPT_REPO=", "SNAPCRYPT_KEY="), env...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, o.String(), e.String()}
}

func lsPaths(t *testing.T, f *fixture, snap string) []string {
	t.Helper()
	r := sc(t, f.env, "ls", "-R", snap)
	r.want(t, 0, "")
	return strings.Split(strings.TrimSpace(r.stdout), "\n")
}

func TestSnapshotExcludeFlags(t *testing.T) {
	f := newFixture(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(f.src, "cache/sub"), 0o755))
	must(os.WriteFile(filepath.Join(f.src, "cache/CACHEDIR.TAG"), []byte("Signature: 8a477f597d28d172789f06886806bc55"), 0o644))
	must(os.WriteFile(filepath.Join(f.src, "cache/sub/x"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(f.src, "NOTES.TXT"), []byte("x"), 0o644))
	must(os.WriteFile(filepath.Join(f.src, "keep.txt"), []byte("x"), 0o644))
	exfile := filepath.Join(f.dir, "excludes")
	must(os.WriteFile(exfile, []byte("# comment\n/emptydir/\n\n"), 0o644))
	r := sc(t, f.env, "snapshot", "--name", "ex", "--exclude", "*.txt", "--iexclude", "!KEEP.TXT", "--iexclude", "notes.txt",
		"--exclude-file", exfile, "--exclude-caches", "--exclude-larger-than", "100", "--exclude-if-present", "nothing-has-this", f.src)
	r.want(t, 0, "entries excluded")
	got := lsPaths(t, f, "ex")
	want := []string{"/cache", "/cache/CACHEDIR.TAG", "/dangling", "/empty", "/keep.txt", "/link",
		"/name-\xff\xfe-not-utf8", "/sub", "/sub/deeper", "/sub/exec.sh", "/sub/hardlink"}
	if !slices.Equal(got, want) {
		t.Fatalf("snapshot with exclusions holds\n%q\nwant\n%q", got, want)
	}
	// snapshots --json shows what was used.
	r = sc(t, f.env, "snapshots", "--json")
	r.want(t, 0, "")
	var snaps []struct {
		Name    string `json:"name"`
		Exclude *struct {
			Patterns []struct {
				Pattern    string `json:"pattern"`
				IgnoreCase bool   `json:"ignore_case"`
			} `json:"patterns"`
			Caches     bool     `json:"caches"`
			IfPresent  []string `json:"if_present"`
			LargerThan uint64   `json:"larger_than"`
		} `json:"exclude"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatal(err)
	}
	ex := snaps[0].Exclude
	if ex == nil || len(ex.Patterns) != 4 || ex.Patterns[0].Pattern != "*.txt" || !ex.Patterns[1].IgnoreCase ||
		ex.Patterns[3].Pattern != "/emptydir/" || !ex.Caches || ex.LargerThan != 100 || ex.IfPresent[0] != "nothing-has-this" {
		t.Fatalf("snapshots --json shows exclusions %s", r.stdout)
	}
	sc(t, f.env, "snapshot", "--exclude", "a[b", f.src).want(t, 2, `exclude pattern "a[b"`)
	sc(t, f.env, "snapshot", "--exclude-larger-than", "12q", f.src).want(t, 2, "size")
	sc(t, f.env, "snapshot", "--exclude-file", filepath.Join(f.dir, "missing"), f.src).want(t, 2, "exclude file")
}

func TestSnapshotStdin(t *testing.T) {
	f := newFixture(t)
	in, err := os.Open(filepath.Join(f.src, "sub/deeper/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	r := scIn(t, f.env, in, "snapshot", "--stdin", "--stdin-filename", "db.sql", "--name", "dump")
	r.want(t, 0, "")
	want, _ := os.ReadFile(filepath.Join(f.src, "sub/deeper/big.bin"))
	if got := sc(t, f.env, "dump", "dump", "db.sql"); got.code != 0 || !bytes.Equal([]byte(got.stdout), want) {
		t.Fatalf("dump of the stdin snapshot: exit %d, %d bytes", got.code, len(got.stdout))
	}
	if r := sc(t, f.env, "snapshots"); !strings.Contains(r.stdout, "stdin:db.sql") {
		t.Fatalf("snapshots does not show stdin:db.sql:\n%s", r.stdout)
	}
	// A command's output, then one that dies midway and one that fails:
	// non-zero exits and no snapshot.
	sc(t, f.env, "snapshot", "--stdin-from-command", "--stdin-filename", "out.txt", "--", "sh", "-c", "echo from a command").want(t, 0, "")
	if got := sc(t, f.env, "dump", "latest", "out.txt"); got.stdout != "from a command\n" {
		t.Fatalf("dump of the command's output: %q", got.stdout)
	}
	sc(t, f.env, "snapshot", "--stdin-from-command", "--", "sh", "-c", "head -c 3000000 /dev/zero; kill -9 $$").want(t, 1, "signal: killed")
	sc(t, f.env, "snapshot", "--stdin-from-command", "--", "sh", "-c", "echo partial; exit 3").want(t, 1, "exit status 3")
	// An input that cannot be read: a directory as stdin.
	d, err := os.Open(f.src)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	scIn(t, f.env, d, "snapshot", "--stdin").want(t, 1, "no snapshot written")
	r = sc(t, f.env, "snapshots", "--json")
	if n := strings.Count(r.stdout, `"short_id"`); n != 2 {
		t.Fatalf("%d snapshots after two good and three failed ones:\n%s", n, r.stdout)
	}
	sc(t, f.env, "snapshot", "--stdin", f.src).want(t, 2, "takes no PATH")
	sc(t, f.env, "snapshot", "--stdin-from-command").want(t, 2, "needs a COMMAND")
	sc(t, f.env, "snapshot", "--stdin", "--stdin-filename", "a/b").want(t, 1, "is not a file name")
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestSnapshotRestoreJSONAndQuiet(t *testing.T) {
	f := newFixture(t)
	r := sc(t, f.env, "snapshot", "--json", f.src)
	r.want(t, 0, "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 2 {
		t.Fatalf("snapshot --json printed %d lines, want status lines and a summary:\n%s", len(lines), r.stdout)
	}
	for _, l := range lines[:len(lines)-1] {
		var st progressJSON
		if err := json.Unmarshal([]byte(l), &st); err != nil || st.MessageType != "status" {
			t.Fatalf("status line %q: %v", l, err)
		}
	}
	var last progressJSON
	json.Unmarshal([]byte(lines[len(lines)-2]), &last)
	if last.FilesDone != 6 || last.BytesDone == 0 {
		t.Errorf("last status line: %+v", last)
	}
	var sum snapshotSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.MessageType != "summary" || !hexID.MatchString(sum.SnapshotID) || sum.Files != 6 || sum.Dirs != 4 || sum.Bytes == 0 {
		t.Fatalf("summary line: %+v", sum)
	}
	if strings.Contains(r.stderr, "snapshot "+sum.SnapshotID[:8]) {
		t.Errorf("snapshot --json also printed the text summary: %s", r.stderr)
	}

	// --quiet: the id alone; no note about the fifo, no summary.
	r = sc(t, f.env, "snapshot", "--quiet", f.src)
	r.want(t, 0, "")
	if !hexID.MatchString(strings.TrimSuffix(r.stdout, "\n")) || r.stderr != "" {
		t.Fatalf("snapshot --quiet: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	// Without --quiet or --json on a pipe: no progress, the id last.
	r = sc(t, f.env, "snapshot", f.src)
	if strings.Contains(r.stdout+r.stderr, "\r") || !hexID.MatchString(lastLine(r.stdout)) {
		t.Fatalf("snapshot on a pipe: stdout %q, stderr %q", r.stdout, r.stderr)
	}

	r = sc(t, f.env, "restore", "--json", "latest", filepath.Join(f.dir, "r1"))
	r.want(t, 0, "")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	var rs struct {
		MessageType string `json:"message_type"`
		SnapshotID  string `json:"snapshot_id"`
		Files       uint64 `json:"files"`
		Hardlinks   uint64 `json:"hardlinks"`
		Bytes       uint64 `json:"bytes"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rs); err != nil || rs.MessageType != "summary" || rs.Files != 5 || rs.Hardlinks != 1 {
		t.Fatalf("restore --json summary %q: %+v %v", lines[len(lines)-1], rs, err)
	}
	var st progressJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-2]), &st); err != nil || st.MessageType != "status" || st.BytesDone != rs.Bytes {
		t.Fatalf("restore --json last status %q: %v", lines[len(lines)-2], err)
	}
	r = sc(t, f.env, "restore", "--quiet", "latest", filepath.Join(f.dir, "r2"))
	r.want(t, 0, "")
	if r.stdout != "" || r.stderr != "" {
		t.Fatalf("restore --quiet printed %q %q", r.stdout, r.stderr)
	}
	if describe(t, filepath.Join(f.dir, "r2")) != describe(t, f.src) {
		t.Fatal("restore --quiet restored something else")
	}
}

func TestRenderLine(t *testing.T) {
	s := progressState{Files: 10, Bytes: 1 << 20, Rate: 2 << 20, Elapsed: 65 * time.Second, Current: "/home/me/some/long/path/file.txt"}
	if got, want := renderLine(s, 200), "[1:05] 10 files  1.0 MiB  2.0 MiB/s  /home/me/some/long/path/file.txt"; got != want {
		t.Errorf("no totals:\n%q\nwant\n%q", got, want)
	}
	s.TotalKnown, s.TotalFiles, s.TotalBytes = true, 40, 4<<20
	if got, want := renderLine(s, 200), "[1:05]  25.0%  10 / 40 files  1.0 MiB / 4.0 MiB  2.0 MiB/s  ETA 3:15  /home/me/some/long/path/file.txt"; got != want {
		t.Errorf("with totals:\n%q\nwant\n%q", got, want)
	}
	// A narrow terminal keeps the path's end.
	got := renderLine(s, 80)
	if n := len([]rune(got)); n != 80 || !strings.HasSuffix(got, "/file.txt") || !strings.Contains(got, "…") {
		t.Errorf("80 columns: %q (%d)", got, n)
	}
	// Names that are not UTF-8 do not break the line.
	s.Current = "/x/\xff\xfe"
	if got := renderLine(s, 200); !strings.HasSuffix(got, "/x/?") {
		t.Errorf("not UTF-8: %q", got)
	}

	// The reporter redraws in place and clears what a longer line left.
	var buf bytes.Buffer
	rep := &reporter{w: &buf, width: func() int { return 100 }}
	rep.show(progressState{Files: 1, Elapsed: time.Second, Current: "/a/long/name"})
	rep.show(progressState{Files: 2, Elapsed: 2 * time.Second})
	rep.finish()
	out := buf.String()
	parts := strings.Split(out, "\r")
	if len(parts) != 5 || parts[0] != "" || !strings.HasPrefix(parts[1], "[0:01] 1 files") ||
		!strings.HasPrefix(parts[2], "[0:02] 2 files") || len(parts[2]) != len(parts[1]) || strings.TrimSpace(parts[3]) != "" || parts[4] != "" {
		t.Fatalf("reporter wrote %q", out)
	}
	// Totals set by the pre-scan show up, with an ETA.
	buf.Reset()
	rep = &reporter{w: &buf, json: true}
	rep.setTotals(4, 100)
	rep.show(progressState{Files: 1, Bytes: 25, Elapsed: time.Second})
	var j progressJSON
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil || *j.TotalFiles != 4 || *j.PercentDone != 25 || *j.SecondsRemaining != 3 {
		t.Fatalf("JSON status %q: %v", buf.String(), err)
	}
}
