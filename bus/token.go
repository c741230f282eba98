package bus

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Token encodes s for use as one NATS subject token or KV key segment.
// Letters, digits, '_' and '-' stay as they are, so common names remain
// readable in subjects; every other byte becomes "=XX" (hex), which keeps
// the encoding reversible and free of '.', '*', '>' and spaces.
func Token(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "=%02X", c)
	}
	return b.String()
}

// Untoken reverses Token.
func Untoken(t string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '=' {
			b.WriteByte(t[i])
			continue
		}
		if i+3 > len(t) {
			return "", fmt.Errorf("bus: truncated escape in token %q", t)
		}
		c, err := hex.DecodeString(t[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bus: bad escape in token %q", t)
		}
		b.WriteByte(c[0])
		i += 2
	}
	return b.String(), nil
}
