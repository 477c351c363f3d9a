package exclude

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A glob matches one path component. It is a list of tokens; a literal
// run of bytes, '?', '*' or a character class.
type glob struct {
	toks []token
	// kind and lit are a fast path for the common shapes: a literal name,
	// "*suffix", "prefix*" and "*".
	kind globKind
	lit  string
}

type globKind uint8

const (
	globGeneral globKind = iota
	globLiteral          // lit
	globSuffix           // *lit
	globPrefix           // lit*
	globAny              // *
)

type tokKind uint8

const (
	tokLit tokKind = iota
	tokOne
	tokStar
	tokClass
)

type token struct {
	kind tokKind
	lit  string
	cls  *class
}

// class is a bracket expression: ranges of characters (see char), named
// POSIX classes and negation.
type class struct {
	neg    bool
	ranges [][2]rune
	named  []func(rune) bool
}

var errBadPattern = errors.New("bad pattern")

// char decodes one character of s: a rune, or for a byte that does not
// start valid UTF-8, invalidBase+byte, so names that are not UTF-8 match
// byte for byte and never equal a real rune.
func char(s string) (rune, int) {
	if c := s[0]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	r, n := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && n == 1 {
		return invalidBase + rune(s[0]), 1
	}
	return r, n
}

const invalidBase = 0x110000

// compileGlob parses one component of a pattern. fold makes it
// case-insensitive (the name is folded by the caller).
func compileGlob(s string, fold bool) (*glob, error) {
	g := &glob{}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			l := lit.String()
			if fold {
				l = foldString(l)
			}
			g.toks = append(g.toks, token{kind: tokLit, lit: l})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch c := s[i]; c {
		case '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("%w: trailing backslash", errBadPattern)
			}
			_, n := char(s[i+1:])
			lit.WriteString(s[i+1 : i+1+n])
			i += 1 + n
		case '?':
			flush()
			g.toks = append(g.toks, token{kind: tokOne})
			i++
		case '*':
			flush()
			if len(g.toks) == 0 || g.toks[len(g.toks)-1].kind != tokStar {
				g.toks = append(g.toks, token{kind: tokStar})
			}
			i++
		case '[':
			flush()
			cls, n, err := compileClass(s[i:])
			if err != nil {
				return nil, err
			}
			g.toks = append(g.toks, token{kind: tokClass, cls: cls})
			i += n
		default:
			_, n := char(s[i:])
			lit.WriteString(s[i : i+n])
			i += n
		}
	}
	flush()
	t := g.toks
	switch {
	case len(t) == 0:
		g.kind = globLiteral
	case len(t) == 1 && t[0].kind == tokLit:
		g.kind, g.lit = globLiteral, t[0].lit
	case len(t) == 1 && t[0].kind == tokStar:
		g.kind = globAny
	case len(t) == 2 && t[0].kind == tokStar && t[1].kind == tokLit:
		g.kind, g.lit = globSuffix, t[1].lit
	case len(t) == 2 && t[0].kind == tokLit && t[1].kind == tokStar:
		g.kind, g.lit = globPrefix, t[0].lit
	}
	return g, nil
}

var namedClasses = map[string]func(rune) bool{
	"alnum":  func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) },
	"alpha":  unicode.IsLetter,
	"blank":  func(r rune) bool { return r == ' ' || r == '\t' },
	"cntrl":  unicode.IsControl,
	"digit":  unicode.IsDigit,
	"graph":  func(r rune) bool { return unicode.IsGraphic(r) && !unicode.IsSpace(r) },
	"lower":  unicode.IsLower,
	"print":  unicode.IsPrint,
	"punct":  unicode.IsPunct,
	"space":  unicode.IsSpace,
	"upper":  unicode.IsUpper,
	"xdigit": func(r rune) bool { return r < 128 && strings.ContainsRune("0123456789abcdefABCDEF", r) },
}

// compileClass parses a bracket expression at the start of s and returns
// it with the number of bytes it took: [abc], [a-z], [!x] or [^x] to
// negate, ']' first to mean itself, \ to escape, [:alpha:] and the other
// POSIX names.
func compileClass(s string) (*class, int, error) {
	c := &class{}
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		c.neg = true
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return nil, 0, fmt.Errorf("%w: unclosed [", errBadPattern)
		}
		if s[i] == ']' && !first {
			return c, i + 1, nil
		}
		first = false
		if strings.HasPrefix(s[i:], "[:") {
			if end := strings.Index(s[i+2:], ":]"); end >= 0 {
				name := s[i+2 : i+2+end]
				fn, ok := namedClasses[name]
				if !ok {
					return nil, 0, fmt.Errorf("%w: unknown class [:%s:]", errBadPattern, name)
				}
				c.named = append(c.named, fn)
				i += end + 4
				continue
			}
		}
		lo, n, err := classChar(s[i:])
		if err != nil {
			return nil, 0, err
		}
		i += n
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi, n, err = classChar(s[i+1:])
			if err != nil {
				return nil, 0, err
			}
			i += 1 + n
			if hi < lo {
				return nil, 0, fmt.Errorf("%w: range out of order in class", errBadPattern)
			}
		}
		c.ranges = append(c.ranges, [2]rune{lo, hi})
	}
}

func classChar(s string) (rune, int, error) {
	if s[0] == '\\' {
		if len(s) < 2 {
			return 0, 0, fmt.Errorf("%w: unclosed [", errBadPattern)
		}
		r, n := char(s[1:])
		return r, n + 1, nil
	}
	r, n := char(s)
	return r, n, nil
}

func (c *class) has(r rune, fold bool) bool {
	in := c.contains(r)
	if !in && fold {
		if u := unicode.ToUpper(r); u != r {
			in = c.contains(u)
		}
	}
	return in != c.neg
}

func (c *class) contains(r rune) bool {
	for _, rg := range c.ranges {
		if rg[0] <= r && r <= rg[1] {
			return true
		}
	}
	if r < invalidBase {
		for _, fn := range c.named {
			if fn(r) {
				return true
			}
		}
	}
	return false
}

// match reports whether name (already folded if fold) matches the glob.
func (g *glob) match(name string, fold bool) bool {
	switch g.kind {
	case globLiteral:
		return name == g.lit
	case globSuffix:
		return strings.HasSuffix(name, g.lit)
	case globPrefix:
		return strings.HasPrefix(name, g.lit)
	case globAny:
		return true
	}
	return matchTokens(g.toks, name, fold)
}

// matchTokens is the usual glob match with backtracking to the last star
// only, linear in practice and O(len(toks)*len(name)) at worst.
func matchTokens(toks []token, name string, fold bool) bool {
	ti, ni := 0, 0
	starT, starN := -1, 0
	for {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tokStar:
				starT, starN = ti, ni
				ti++
				continue
			case tokLit:
				if strings.HasPrefix(name[ni:], t.lit) {
					ti++
					ni += len(t.lit)
					continue
				}
			case tokOne:
				if ni < len(name) {
					_, n := char(name[ni:])
					ti++
					ni += n
					continue
				}
			case tokClass:
				if ni < len(name) {
					r, n := char(name[ni:])
					if t.cls.has(r, fold) {
						ti++
						ni += n
						continue
					}
				}
			}
		} else if ni == len(name) {
			return true
		}
		// Mismatch: let the last star take one more character.
		if starT < 0 || starN >= len(name) {
			return false
		}
		_, n := char(name[starN:])
		starN += n
		ti, ni = starT+1, starN
	}
}

// foldString lowers s for case-insensitive matching. Bytes that are not
// UTF-8 are kept as they are (strings.ToLower would replace them).
func foldString(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if ascii && !upper {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := char(s[i:])
		if r >= invalidBase {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		i += n
	}
	return b.String()
}
