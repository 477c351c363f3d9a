package main

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "100": 100, "1k": 1024, "500K": 512000, "2M": 2 << 20,
		"3g": 3 << 30, "1T": 1 << 40, "10MiB": 10 << 20, "10MB": 10 << 20, "7b": 7} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "1.5M", "12x", "99999999999999999999", "20000000000T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

// TestSizeFlags: a size flag that does not parse, and a cache of zero
// bytes, are usage errors that name the flag.
func TestSizeFlags(t *testing.T) {
	f := newFixture(t)
	mnt := t.TempDir()
	for _, bad := range []string{"0", "-5", "lots", "1.5G"} {
		sc(t, f.env, "mount", "--cache-size", bad, mnt).want(t, exitUsage, "--cache-size")
	}
	sc(t, f.env, "snapshot", "--exclude-larger-than", "12x", f.src).want(t, exitUsage, "12x")
}
