package local

import "os"

// SetWriteHook replaces how s writes a temporary file's content.
func SetWriteHook(s *Store, hook func(f *os.File, data []byte) error) { s.writeHook = hook }
