package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize parses a size as users write it (--cache-size,
// --exclude-larger-than): a whole number of bytes with
// an optional unit, k, m, g or t (powers of 1024; "KiB", "MB" and "M" all
// mean the same), case-insensitive. "500k" is 512000.
func parseSize(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "ib")
	t = strings.TrimSuffix(t, "b")
	mult := uint64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || v > (1<<64-1)/mult {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with k, m, g or t", s)
	}
	return v * mult, nil
}
