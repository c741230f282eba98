package main

import (
	"log/slog"
	"slices"
	"strings"
)

// otherVariables are the KEYSD_* variables that other infrakeys tools
// read and keysd does not: keysctl's (a shell that talks to keysd often
// exports them, and names keysctl read in earlier versions may linger
// there) and the test suite's. keysd does not warn about them. This is
// the one list of them; TestOtherVariablesCoverKeysctl holds it to
// keysctl's source.
var otherVariables = []string{
	// keysctl
	"KEYSD_URL",
	"KEYSD_ACCOUNT",
	"KEYSD_KEY_FILE",
	"KEYSD_NATS_NKEY",
	// the test suite (cmd/keysd's tests run these tools)
	"KEYSD_TRITON",
	"KEYSD_SSH_KEYGEN",
}

// unknownVariable is a KEYSD_* variable of the environment that no
// infrakeys tool reads, and the known one it is closest to.
type unknownVariable struct {
	Name, Closest string
}

// unknownVariables returns the KEYSD_* variables of environ (os.Environ's
// "NAME=value" form) that neither keysd nor another infrakeys tool reads,
// each with the known name closest to it: a misspelt variable is
// otherwise silently ignored, and keysd runs with a default the operator
// did not mean.
func unknownVariables(environ []string) []unknownVariable {
	var known []string
	for _, v := range envVars(new(Config)) {
		known = append(known, v.name)
	}
	known = append(known, otherVariables...)
	var unknown []unknownVariable
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "KEYSD_") || slices.Contains(known, name) {
			continue
		}
		unknown = append(unknown, unknownVariable{Name: name, Closest: closest(name, known)})
	}
	return unknown
}

// warnUnknownVariables logs a warning for each of unknownVariables. Only
// names are logged, never values: a variable meant as KEYSD_MASTER_KEY
// holds a secret.
func warnUnknownVariables(logger *slog.Logger, environ []string) {
	for _, u := range unknownVariables(environ) {
		logger.Warn("environment variable ignored: keysd does not read it; misspelt?", "variable", u.Name, "closest", u.Closest)
	}
}

// closest returns the candidate with the least edit distance to name; of
// equally distant ones, the first.
func closest(name string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		if d := editDistance(name, c); bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b: the fewest
// single-byte insertions, deletions and substitutions that turn a into b.
// Variable names are ASCII, so bytes are characters.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
