package exclude

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type probe struct {
	path string
	dir  bool
	want bool // excluded
}

func TestMatcher(t *testing.T) {
	f, d := false, true
	cases := []struct {
		name     string
		patterns []string
		fold     bool
		probes   []probe
	}{
		{"plain name at any depth", []string{"node_modules"}, false, []probe{
			{"node_modules", d, true}, {"a/b/node_modules", d, true}, {"a/node_modules", f, true},
			{"node_modules2", d, false}, {"a/xnode_modules", f, false},
		}},
		{"star stays in a component", []string{"*.o"}, false, []probe{
			{"x.o", f, true}, {"src/lib/x.o", f, true}, {"x.of", f, false}, {".o", f, true},
		}},
		{"trailing slash is directories only", []string{"build/"}, false, []probe{
			{"build", d, true}, {"src/build", d, true}, {"build", f, false}, {"src/build", f, false},
		}},
		{"leading slash anchors", []string{"/tmp"}, false, []probe{
			{"tmp", d, true}, {"tmp", f, true}, {"a/tmp", d, false},
		}},
		{"slash in the middle anchors", []string{"doc/*.html"}, false, []probe{
			{"doc/a.html", f, true}, {"x/doc/a.html", f, false}, {"doc/sub/a.html", f, false},
		}},
		{"**/ prefix matches at any depth", []string{"**/logs"}, false, []probe{
			{"logs", d, true}, {"a/logs", d, true}, {"a/b/logs", f, true}, {"alogs", f, false},
		}},
		{"**/ prefix with a path", []string{"**/logs/debug.log"}, false, []probe{
			{"logs/debug.log", f, true}, {"a/b/logs/debug.log", f, true}, {"logs/x/debug.log", f, false},
		}},
		{"/** suffix is everything inside, not the directory", []string{"cache/**"}, false, []probe{
			{"cache", d, false}, {"cache/a", f, true}, {"cache/a/b", d, true}, {"x/cache/a", f, false},
		}},
		{"/**/ is zero or more directories", []string{"a/**/b"}, false, []probe{
			{"a/b", f, true}, {"a/x/b", f, true}, {"a/x/y/b", d, true}, {"a/x/y/c", f, false}, {"b", f, false},
		}},
		{"** alone matches everything", []string{"**"}, false, []probe{
			{"a", f, true}, {"a/b", d, true},
		}},
		{"question mark is one character, not a slash", []string{"a?c", "/x?y"}, false, []probe{
			{"abc", f, true}, {"ac", f, false}, {"abbc", f, false}, {"x/y", f, false}, {"xzy", f, true},
			{"a\u00e9c", f, true},
		}},
		{"character classes", []string{"file[0-9].txt", "[!a-c]z", "[]x]q", "[[:upper:]][[:digit:]]"}, false, []probe{
			{"file3.txt", f, true}, {"filex.txt", f, false}, {"dz", f, true}, {"bz", f, false},
			{"]q", f, true}, {"xq", f, true}, {"yq", f, false}, {"A1", f, true}, {"a1", f, false},
		}},
		{"caret negates a class too", []string{"[^.]*"}, false, []probe{
			{"visible", f, true}, {".hidden", f, false},
		}},
		{"escaped characters are literal", []string{`\*.txt`, `what\?`, `\[x]`, `\!important`, `\#note`}, false, []probe{
			{"*.txt", f, true}, {"a.txt", f, false}, {"what?", f, true}, {"whats", f, false},
			{"[x]", f, true}, {"x", f, false}, {"!important", f, true}, {"important", f, false}, {"#note", f, true},
		}},
		{"trailing spaces are dropped unless escaped", []string{"a  ", `b\ `}, false, []probe{
			{"a", f, true}, {"a  ", f, false}, {"b ", f, true}, {"b", f, false},
		}},
		{"negation: the last match wins", []string{"*.log", "!keep.log"}, false, []probe{
			{"x.log", f, true}, {"keep.log", f, false}, {"d/keep.log", f, false},
		}},
		{"negation: a later exclude wins again", []string{"*.log", "!keep.log", "/keep.log"}, false, []probe{
			{"keep.log", f, true}, {"d/keep.log", f, false},
		}},
		{"negation of a directory-only rule", []string{"*", "!*/"}, false, []probe{
			{"a", f, true}, {"a", d, false},
		}},
		{"names that are not UTF-8", []string{"bad-\xff*", "?\xfe", "[\xfa-\xfc]z"}, false, []probe{
			{"bad-\xff\xfe", f, true}, {"bad-\xfe", f, false}, {"x\xfe", f, true}, {"\xc3\xfe", f, true},
			{"\xfbz", f, true}, {"\xfdz", f, false}, {"\u00fbz", f, false},
		}},
		{"star over bytes that are not UTF-8", []string{"*.bin"}, false, []probe{
			{"\xff\xfe.bin", f, true}, {"dir\xff/a.bin", f, true},
		}},
		{"case-insensitive", []string{"*.JPG", "/Photos/", "[A-C]x"}, true, []probe{
			{"a.jpg", f, true}, {"a.Jpg", f, true}, {"photos", d, true}, {"PHOTOS", d, true},
			{"x/photos", d, false}, {"bx", f, true}, {"BX", f, true}, {"dx", f, false},
			{"\xffA.JPG", f, true},
		}},
		{"case-sensitive by default", []string{"*.JPG"}, false, []probe{
			{"a.jpg", f, false}, {"a.JPG", f, true},
		}},
		{"leading slash in the path is ignored", []string{"/a/b"}, false, []probe{
			{"/a/b", f, true},
		}},
		{"double slashes in a pattern", []string{"a//b"}, false, []probe{
			{"a/b", f, true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m Matcher
			for _, p := range c.patterns {
				if err := m.Add(p, c.fold); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range c.probes {
				if got := m.Excluded(p.path, p.dir); got != p.want {
					t.Errorf("patterns %q: Excluded(%q, dir=%v) = %v, want %v", c.patterns, p.path, p.dir, got, p.want)
				}
			}
		})
	}
}

func TestMixedFold(t *testing.T) {
	var m Matcher
	if err := m.Add("/Data/*.TMP", false); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("/data/keep.*", true); err != nil {
		t.Fatal(err)
	}
	for _, p := range []probe{{"Data/x.TMP", false, true}, {"data/x.tmp", false, false}, {"DATA/KEEP.x", false, true}} {
		if got := m.Excluded(p.path, p.dir); got != p.want {
			t.Errorf("Excluded(%q) = %v, want %v", p.path, got, p.want)
		}
	}
}

func TestBadPatterns(t *testing.T) {
	for _, p := range []string{"", "!", "/", "a[bc", `x\`, "[z-a]", "[[:nope:]]", `[a\`} {
		var m Matcher
		if err := m.Add(p, false); err == nil {
			t.Errorf("Add(%q) accepted a bad pattern", p)
		}
	}
}

func TestEmptyMatcher(t *testing.T) {
	var m Matcher
	if m.Excluded("anything", true) {
		t.Fatal("an empty matcher excluded something")
	}
}

func TestReadPatterns(t *testing.T) {
	got, err := ReadPatterns(strings.NewReader("# comment\n\n*.o\r\n  \n\\#hash\n!keep.o\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"*.o", `\#hash`, "!keep.o"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := ReadPatternFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing pattern file read")
	}
}

func TestIsCacheDir(t *testing.T) {
	root := t.TempDir()
	mk := func(name, content string) string {
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if content != "" {
			if err := os.WriteFile(filepath.Join(d, CacheTagName), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	valid := mk("valid", "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n")
	exact := mk("exact", "Signature: 8a477f597d28d172789f06886806bc55")
	short := mk("short", "Signature: 8a477f597d28d172789f06886806bc5")
	wrong := mk("wrong", "Signature: 0000000000000000000000000000000000\n")
	none := mk("none", "")
	link := mk("link", "")
	if err := os.Symlink(filepath.Join(valid, CacheTagName), filepath.Join(link, CacheTagName)); err != nil {
		t.Fatal(err)
	}
	for d, want := range map[string]bool{valid: true, exact: true, short: false, wrong: false, none: false, link: false} {
		if got := IsCacheDir(d); got != want {
			t.Errorf("IsCacheDir(%s) = %v, want %v", filepath.Base(d), got, want)
		}
	}
}
