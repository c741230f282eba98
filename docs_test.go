// Tests that hold the repository's documentation to the repository: a
// reader of a fresh clone can follow every link and anchor, nothing points
// at files outside the clone, and every KEYSD_* name the docs give is one
// the code reads. The README's walk-through itself is run by
// TestReadmeFirstRun in cmd/keysd.
package infrakeys_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// MustTrackedFiles returns the files git tracks in this checkout, slash
// separated and relative to its root: what a fresh clone holds.
func MustTrackedFiles(tb testing.TB) []string {
	tb.Helper()
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		tb.Fatalf("git ls-files: %v", err)
	}
	files := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(files) == 0 || files[0] == "" {
		tb.Fatal("git ls-files lists no file")
	}
	return files
}

// docFiles returns the documentation the tests hold: README.md and
// docs/*.md.
func docFiles(tracked []string) []string {
	var docs []string
	for _, f := range tracked {
		if f == "README.md" || (path.Dir(f) == "docs" && path.Ext(f) == ".md") {
			docs = append(docs, f)
		}
	}
	return docs
}

// fenceRE opens or closes a fenced code block.
var fenceRE = regexp.MustCompile("^ {0,3}(```|~~~)")

// prose returns Markdown source with the lines of fenced code blocks
// blanked, keeping line numbers: code is not rendered as links or headings.
func prose(src string) string {
	lines := strings.Split(src, "\n")
	var fence string
	for i, line := range lines {
		m := fenceRE.FindStringSubmatch(line)
		switch {
		case fence == "" && m != nil:
			fence = m[1]
			lines[i] = ""
		case fence != "":
			if m != nil && m[1] == fence {
				fence = ""
			}
			lines[i] = ""
		}
	}
	return strings.Join(lines, "\n")
}

// codeSpanRE is an inline code span, which may run across a line break.
var codeSpanRE = regexp.MustCompile("`[^`]*`")

// withoutCodeSpans blanks inline code, keeping line breaks: `[a](b)` in
// backticks is text, not a link.
func withoutCodeSpans(s string) string {
	return codeSpanRE.ReplaceAllStringFunc(s, func(span string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, span)
	})
}

var (
	// inlineLinkRE is [text](target "title"); the text may wrap lines.
	inlineLinkRE = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// refLinkRE is a link reference definition, [label]: target.
	refLinkRE = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
	// schemeRE starts an absolute URL (https:, mailto:).
	schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	// headingRE is an ATX heading.
	headingRE = regexp.MustCompile(`^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$`)
	// headingLinkRE is a link inside a heading, rendered as its text.
	headingLinkRE = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// anchors returns the anchors GitHub gives the headings of Markdown source.
func anchors(src string) map[string]bool {
	seen := map[string]int{}
	out := map[string]bool{}
	for _, line := range strings.Split(prose(src), "\n") {
		m := headingRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		s := slug(m[1])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

// slug is GitHub's anchor for a heading: the rendered text lowercased,
// punctuation and symbols dropped (but not '-' and '_'), each space a '-'.
// A repeated heading gets -1, -2, ... (see anchors).
func slug(heading string) string {
	text := headingLinkRE.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-', r == '_', unicode.IsLetter(r), unicode.IsNumber(r), unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"Durability: what fsync on every write costs":                "durability-what-fsync-on-every-write-costs",
		"Rotation (event log untouched)":                             "rotation-event-log-untouched",
		"First run: from nothing to `triton key list`":               "first-run-from-nothing-to-triton-key-list",
		"On the bus: drivers, the resource manager, audit consumers": "on-the-bus-drivers-the-resource-manager-audit-consumers",
		"KeyCreated (v1)":                           "keycreated-v1",
		"The `KEYSD_*` variables":                   "the-keysd_-variables",
		"See [events](events.md)":                   "see-events",
		"keysd against what it stands on (issue 6)": "keysd-against-what-it-stands-on-issue-6",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
	if got := anchors("# A\n## A\n```\n# A\n```\n## A\n"); !got["a"] || !got["a-1"] || !got["a-2"] || len(got) != 3 {
		t.Errorf("anchors of three headings A (one more in code) = %v, want a, a-1, a-2", got)
	}
}

// TestDocLinksResolve follows every relative link in README.md and
// docs/*.md: its file must be in the repository, and its #anchor a heading
// of that file.
func TestDocLinksResolve(t *testing.T) {
	tracked := MustTrackedFiles(t)
	isTracked := map[string]bool{}
	for _, f := range tracked {
		isTracked[f] = true
	}
	isDir := func(p string) bool {
		return slices.ContainsFunc(tracked, func(f string) bool { return strings.HasPrefix(f, p+"/") })
	}
	docs := docFiles(tracked)
	if !slices.Contains(docs, "README.md") || len(docs) < 2 {
		t.Fatalf("docs found: %v, want README.md and docs/*.md", docs)
	}
	for _, doc := range docs {
		src := mustRead(t, doc)
		text := withoutCodeSpans(prose(src))
		var matches [][]int
		matches = append(matches, inlineLinkRE.FindAllStringSubmatchIndex(text, -1)...)
		matches = append(matches, refLinkRE.FindAllStringSubmatchIndex(text, -1)...)
		for _, m := range matches {
			target := text[m[2]:m[3]]
			line := 1 + strings.Count(text[:m[2]], "\n")
			if schemeRE.MatchString(target) {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			file, err := url.PathUnescape(file)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", doc, line, target, err)
				continue
			}
			resolved := doc
			if file != "" {
				if strings.HasPrefix(file, "/") {
					t.Errorf("%s:%d: link %q is absolute; GitHub resolves it against its own site, not the repository", doc, line, target)
					continue
				}
				resolved = path.Join(path.Dir(doc), file)
				if resolved == ".." || strings.HasPrefix(resolved, "../") {
					t.Errorf("%s:%d: link %q leaves the repository", doc, line, target)
					continue
				}
				if !isTracked[resolved] && !isDir(resolved) {
					t.Errorf("%s:%d: link %q: %s is not in the repository", doc, line, target, resolved)
					continue
				}
			}
			if frag == "" {
				continue
			}
			if path.Ext(resolved) != ".md" {
				t.Errorf("%s:%d: link %q: an anchor into %s, which is not Markdown", doc, line, target, resolved)
				continue
			}
			anchor, err := url.PathUnescape(frag)
			if err != nil {
				t.Errorf("%s:%d: link %q: %v", doc, line, target, err)
				continue
			}
			if !anchors(mustRead(t, resolved))[anchor] {
				t.Errorf("%s:%d: link %q: %s has no heading with anchor #%s", doc, line, target, resolved, anchor)
			}
		}
	}
}

// outsideRefs are ways of pointing at material kept outside the
// repository, which a reader of a clone cannot open.
var outsideRefs = []*regexp.Regexp{
	regexp.MustCompile(`FACTS\.md`),
	regexp.MustCompile(`shared/reference`),
	regexp.MustCompile(`(?:^|[^.])\.\./shared\b`), // not ".../shared", an elided API path
	regexp.MustCompile(`/work/(?:shared|main|wt|plans)\b`),
}

// TestNoReferencesOutsideRepository reads every tracked text file: none
// may send its reader to a document that is not in the repository.
func TestNoReferencesOutsideRepository(t *testing.T) {
	for _, f := range MustTrackedFiles(t) {
		if f == "docs_test.go" { // it names the patterns
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 {
			continue // binary
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, len(b)+1)
		for n := 1; sc.Scan(); n++ {
			for _, re := range outsideRefs {
				if m := re.FindString(sc.Text()); m != "" {
					t.Errorf("%s:%d: %q points outside the repository; state what the reader needs here instead: %s", f, n, m, strings.TrimSpace(sc.Text()))
				}
			}
		}
	}
}

// nameRE is an environment variable of keysd or keysctl, or a NATS name
// of keysd's, as the docs write them ("KEYSD_*" and "KV_KEYSD_*" are not).
var nameRE = regexp.MustCompile(`\b(?:KEYSD|KEYSCTL)_[A-Z0-9_]*[A-Z0-9]\b`)

// literalNames returns the KEYSD_*/KEYSCTL_* names that the non-test Go
// files of dirs spell as a whole string literal: env("KEYSD_DATA_DIR", ...),
// getenv("KEYSD_URL"), StreamName = "KEYSD_EVENTS". Names only mentioned
// inside a message do not count: a name is known where the code uses it.
func literalNames(tb testing.TB, dirs ...string) map[string]bool {
	tb.Helper()
	whole := regexp.MustCompile(`^` + nameRE.String() + `$`)
	names := map[string]bool{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			tb.Fatalf("no Go files in %s (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				tb.Fatal(err)
			}
			ast.Inspect(file, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && whole.MatchString(s) {
						names[s] = true
					}
				}
				return true
			})
		}
	}
	return names
}

// TestDocsNameOnlyVariablesTheCodeReads checks every KEYSD_* (and
// KEYSCTL_*) name in README.md and docs/ against the code: a variable that
// keysd or keysctl reads, or a stream or bucket keysd makes. A reader who
// sets a variable nothing reads gets silence.
func TestDocsNameOnlyVariablesTheCodeReads(t *testing.T) {
	vars := literalNames(t, "cmd/keysd", "cmd/keysctl")
	natsNames := literalNames(t, "bus", "projections")
	// The scan must find what it is meant to, or every name would be
	// reported and nobody would trust the test.
	for _, want := range []string{"KEYSD_DATA_DIR", "KEYSD_ACCOUNT"} {
		if !vars[want] {
			t.Fatalf("found no %s in cmd/keysd or cmd/keysctl: the scan for the variables they read is broken (found %v)", want, vars)
		}
	}
	if !natsNames["KEYSD_EVENTS"] {
		t.Fatalf("found no KEYSD_EVENTS in bus/: the scan for stream names is broken (found %v)", natsNames)
	}
	for _, doc := range docFiles(MustTrackedFiles(t)) {
		for n, line := range strings.Split(mustRead(t, doc), "\n") {
			for _, name := range nameRE.FindAllString(line, -1) {
				if !vars[name] && !natsNames[name] {
					t.Errorf("%s:%d: %s is no variable keysd or keysctl reads, nor a stream or bucket of keysd's", doc, n+1, name)
				}
			}
		}
	}
}

// TestReadmeNamesGoVersion keeps the README's Go version the one go.mod
// asks for.
func TestReadmeNamesGoVersion(t *testing.T) {
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(mustRead(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	// "Go 1.26.8", not "Go 1.26" nor "Go 1.26.80".
	named := regexp.MustCompile(`(?m)\bGo ` + regexp.QuoteMeta(m[1]) + `(?:[^.0-9]|\.?$)`)
	if !named.MatchString(mustRead(t, "README.md")) {
		t.Errorf("README.md does not name the Go version go.mod asks for, Go %s", m[1])
	}
}

func mustRead(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
