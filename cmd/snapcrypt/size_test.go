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
