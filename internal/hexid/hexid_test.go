package hexid

import "testing"

func TestValid(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want bool
	}{
		{"0123456789abcdef", 16, true},
		{"", 0, true},
		{"0123456789abcdef", 15, false},
		{"0123456789ABCDEF", 16, false}, // upper case is not the format's
		{"0123456789abcdeg", 16, false},
		{"0123456789abcde ", 16, false},
		{"ab", 3, false},
	} {
		if got := Valid(c.s, c.n); got != c.want {
			t.Errorf("Valid(%q, %d) = %v, want %v", c.s, c.n, got, c.want)
		}
	}
}
