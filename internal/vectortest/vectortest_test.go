package vectortest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/snapcrypt/snapcrypt/repo/object"
)

// recorder is a testing.TB that records failures; Fatal stops the
// goroutine, as it does in a test.
type recorder struct {
	testing.TB
	errs  []string
	fatal bool
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatal(args ...any) {
	r.errs = append(r.errs, fmt.Sprint(args...))
	r.fatal = true
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	r.fatal = true
	runtime.Goexit()
}

// record runs f with a recorder in a goroutine of its own.
func record(f func(t testing.TB)) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

type vec struct {
	Name   string `json:"name"`
	Expect string `json:"expect"`
}

func TestRunWritesComparesAndChecks(t *testing.T) {
	file := filepath.Join(t.TempDir(), "v.json")
	gen := []vec{{"a", OK}, {"b", Corrupted}}
	var seen []string
	r := record(func(rt testing.TB) { run(rt, file, gen, func(v vec) { seen = append(seen, v.Name) }, true) })
	if len(r.errs) != 0 {
		t.Fatalf("update run failed: %v", r.errs)
	}
	if strings.Join(seen, ",") != "a,b" {
		t.Fatalf("checked %v, want a,b", seen)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := "[\n  {\n    \"name\": \"a\",\n    \"expect\": \"ok\"\n  },\n  {\n    \"name\": \"b\",\n    \"expect\": \"corrupted\"\n  }\n]\n"
	if string(b) != want {
		t.Fatalf("written file:\n%s\nwant:\n%s", b, want)
	}

	// Without -update, vectors the code no longer produces fail the test,
	// and the stored ones are still checked.
	seen = nil
	r = record(func(rt testing.TB) { run(rt, file, gen[:1], func(v vec) { seen = append(seen, v.Name) }, false) })
	if len(r.errs) != 1 || !strings.Contains(r.errs[0], "differ from what the code produces now") {
		t.Fatalf("stale vectors: %v", r.errs)
	}
	if strings.Join(seen, ",") != "a,b" {
		t.Fatalf("checked %v, want the stored a,b", seen)
	}
	if b2, _ := os.ReadFile(file); string(b2) != want {
		t.Fatal("a run without -update changed the file")
	}
}

func TestLoadFails(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "none.json"), "run go test -run Vectors -update"},
		{"empty", write("empty.json", "[]\n"), "no vectors"},
		{"unknown-field", write("unknown.json", `[{"name":"a","expect":"ok","colour":1}]`), "unknown field"},
		{"not-json", write("bad.json", "vectors"), "invalid character"},
	} {
		r := record(func(rt testing.TB) { Load[vec](rt, c.file) })
		if !r.fatal || len(r.errs) != 1 || !strings.Contains(r.errs[0], c.want) {
			t.Errorf("%s: %v, want a fatal error with %q", c.name, r.errs, c.want)
		}
	}
	ok := write("ok.json", `[{"name":"a","expect":"ok"}]`)
	r := record(func(rt testing.TB) {
		if vs := Load[vec](rt, ok); len(vs) != 1 || vs[0] != (vec{"a", OK}) {
			rt.Errorf("loaded %v", vs)
		}
	})
	if len(r.errs) != 0 {
		t.Fatal(r.errs)
	}
}

func TestCheckParse(t *testing.T) {
	// parse accepts "good" and "odd" (which marshals as "good"); "bad" is
	// corrupted, "other" fails with an error that does not say so.
	parse := func(b []byte) (string, error) {
		switch s := string(b); s {
		case "good", "odd":
			return s, nil
		case "bad":
			return "", fmt.Errorf("thing: %w", object.ErrCorrupt)
		default:
			return "", errors.New("thing: broken")
		}
	}
	marshal := func(s string) []byte {
		if s == "odd" {
			return []byte("good")
		}
		return []byte(s)
	}
	for _, c := range []struct {
		stored, expect string
		want           []string // substrings of the failures, in order
	}{
		{"good", OK, nil},
		{"bad", Corrupted, nil},
		{"good", Corrupted, []string{"got ok"}},
		{"bad", OK, []string{"got corrupted"}},
		{"odd", OK, []string{"marshal does not give back"}},
		{"other", Corrupted, []string{"does not wrap object.ErrCorrupt"}},
	} {
		r := record(func(rt testing.TB) { CheckParse(rt, "v", c.expect, c.stored, parse, marshal) })
		if len(r.errs) != len(c.want) {
			t.Errorf("%s expecting %s: failures %v, want %v", c.stored, c.expect, r.errs, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(r.errs[i], "v: ") || !strings.Contains(r.errs[i], w) {
				t.Errorf("%s expecting %s: failure %q, want %q", c.stored, c.expect, r.errs[i], w)
			}
		}
	}
}
