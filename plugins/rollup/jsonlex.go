package rollup

import (
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// JSON lexing for the fast path: whitespace, strings (validated, escapes decoded exactly as
// encoding/json decodes them) and skipping of values it does not read.

// maxSkipDepth bounds nesting in ignored values; deeper ones go to the exact path.
const maxSkipDepth = 512

// plainByte[c] is true for bytes that may appear in a string without special handling.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func skipWS(src []byte, i int) int {
	for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\r' || src[i] == '\t') {
		i++
	}
	return i
}

func hasLiteral(src []byte, i int, lit string) bool {
	return len(src)-i >= len(lit) && string(src[i:i+len(lit)]) == lit
}

// scanString validates a string whose content starts at src[i] (escapes, no control characters,
// valid UTF-8) and returns the index of its closing quote; esc tells whether it has escapes.
func scanString(src []byte, i int) (end int, esc, ok bool) {
	start, ascii := i, true
	for i < len(src) {
		c := src[i]
		switch {
		case plainByte[c]:
			i++
		case c == '"':
			return i, esc, ascii || utf8.Valid(src[start:i])
		case c == '\\':
			if i+1 >= len(src) {
				return i, esc, false
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(src)-i < 6 || hex4(src[i+2:i+6]) < 0 {
					return i, esc, false
				}
				i += 6
			default:
				return i, esc, false
			}
			esc = true
		case c < 0x20:
			return i, esc, false
		default:
			ascii = false
			i++
		}
	}
	return i, esc, false
}

// skipString validates a string whose content starts at src[i] and returns the index after it.
func skipString(src []byte, i int) (int, bool) {
	end, _, ok := scanString(src, i)
	return end + 1, ok
}

// str reads a string whose content starts at src[i]: its value (the raw bytes when it has no escapes,
// else decoded into *buf) and the index of its closing quote.
func (st *state) str(src []byte, i int, buf *[]byte) (v []byte, end int, ok bool) {
	end, esc, ok := scanString(src, i)
	if !ok {
		return nil, end, false
	}
	if !esc {
		return src[i:end], end, true
	}
	*buf = unescape((*buf)[:0], src[i:end])
	return *buf, end, true
}

// unescape decodes the content of a valid JSON string exactly as encoding/json does; in particular a
// \u escape of a lone or badly paired UTF-16 surrogate becomes U+FFFD.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			j := i + 1
			for j < len(s) && s[j] != '\\' {
				j++
			}
			dst = append(dst, s[i:j]...)
			i = j
			continue
		}
		c := s[i+1]
		i += 2
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(s[i : i+4]))
			i += 4
			if utf16.IsSurrogate(r) {
				if len(s)-i >= 6 && s[i] == '\\' && s[i+1] == 'u' {
					if d := utf16.DecodeRune(r, rune(hex4(s[i+2:i+6]))); d != unicode.ReplacementChar {
						dst = utf8.AppendRune(dst, d)
						i += 6
						break
					}
				}
				r = unicode.ReplacementChar
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, c)
		}
	}
	return dst
}

// hex4 reads four hex digits, or returns -1.
func hex4(b []byte) int {
	v := 0
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		v = v<<4 | int(c)
	}
	return v
}

// skipValue validates any JSON value at src[i] and returns the index after it.
func skipValue(src []byte, i, depth int) (int, bool) {
	if i >= len(src) {
		return i, false
	}
	switch c := src[i]; {
	case c == '"':
		return skipString(src, i+1)
	case c == '-' || c-'0' <= 9:
		return numberEnd(src, i)
	case c == 't':
		return i + 4, hasLiteral(src, i, "true")
	case c == 'f':
		return i + 5, hasLiteral(src, i, "false")
	case c == 'n':
		return i + 4, hasLiteral(src, i, "null")
	case c == '{' || c == '[':
		if depth >= maxSkipDepth {
			return i, false
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		if i = skipWS(src, i+1); i < len(src) && src[i] == closer {
			return i + 1, true
		}
		for {
			var ok bool
			if c == '{' {
				if i >= len(src) || src[i] != '"' {
					return i, false
				}
				if i, ok = skipString(src, i+1); !ok {
					return i, false
				}
				if i = skipWS(src, i); i >= len(src) || src[i] != ':' {
					return i, false
				}
				i = skipWS(src, i+1)
			}
			if i, ok = skipValue(src, i, depth+1); !ok {
				return i, false
			}
			if i = skipWS(src, i); i >= len(src) {
				return i, false
			}
			if src[i] == closer {
				return i + 1, true
			}
			if src[i] != ',' {
				return i, false
			}
			i = skipWS(src, i+1)
		}
	}
	return i, false
}

// numberEnd validates a JSON number at src[i] and returns the index after it.
func numberEnd(src []byte, i int) (int, bool) {
	if src[i] == '-' {
		i++
	}
	switch {
	case i >= len(src):
		return i, false
	case src[i] == '0':
		i++
	case src[i]-'1' <= 8:
		for i < len(src) && src[i]-'0' <= 9 {
			i++
		}
	default:
		return i, false
	}
	if i < len(src) && src[i] == '.' {
		i++
		d := i
		for i < len(src) && src[i]-'0' <= 9 {
			i++
		}
		if i == d {
			return i, false
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		d := i
		for i < len(src) && src[i]-'0' <= 9 {
			i++
		}
		if i == d {
			return i, false
		}
	}
	return i, true
}
