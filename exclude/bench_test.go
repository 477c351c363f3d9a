package exclude

import (
	"fmt"
	"testing"
)

// benchPaths makes n paths shaped like a home directory and a source tree.
func benchPaths(n int) []string {
	dirs := []string{"src/github.com/example/project/internal/server", "Documents/reports/2024",
		".config/app", "Pictures/holiday", "src/project/node_modules/lodash/fp", "go/pkg/mod/golang.org/x/sys@v0.1.0/unix"}
	exts := []string{".go", ".txt", ".jpg", ".o", ".log", ".json", ".tmp", ""}
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("%s/d%d/file%d%s", dirs[i%len(dirs)], i%97, i, exts[i%len(exts)])
	}
	return ps
}

// BenchmarkExcluded times the decision for 100,000 paths against a set of
// patterns such as a home directory's snapshot uses; ns/path is reported.
func BenchmarkExcluded(b *testing.B) {
	var m Matcher
	for _, p := range []string{"*.o", "*.tmp", "*~", ".cache/", "node_modules/", "/go/pkg/mod/", "**/build/**",
		"*.log", "!important.log", "Documents/**/*.bak", "[Tt]humbs.db", "/Downloads/*.iso"} {
		if err := m.Add(p, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.Add("*.JPG", true); err != nil {
		b.Fatal(err)
	}
	paths := benchPaths(100000)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for i, p := range paths {
			if m.Excluded(p, i%8 == 7) {
				n++
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(paths)), "ns/path")
	if n == 0 {
		b.Fatal("nothing excluded")
	}
}
