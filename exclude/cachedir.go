package exclude

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
)

// CacheTagName is the name of the file that tags a cache directory.
const CacheTagName = "CACHEDIR.TAG"

// cacheSignature is the header a valid tag starts with, per the Cache
// Directory Tagging Specification (https://bford.info/cachedir/).
var cacheSignature = []byte("Signature: 8a477f597d28d172789f06886806bc55")

// IsCacheDir tells whether dir holds a valid CACHEDIR.TAG: a regular file
// (not a symlink) whose first bytes are the specification's signature.
// Errors reading the tag count as no tag.
func IsCacheDir(dir string) bool {
	p := filepath.Join(dir, CacheTagName)
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, len(cacheSignature))
	if _, err := io.ReadFull(f, buf); err != nil {
		return false
	}
	return bytes.Equal(buf, cacheSignature)
}
