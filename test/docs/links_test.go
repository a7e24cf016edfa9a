// Package docs checks that the documentation stands alone: every relative
// link in README.md and docs/*.md, and every anchor, resolves inside the
// repository.
package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const repoRoot = "../.."

var (
	// inlineLink is [text](target) or [text](target "title"); images too.
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// refLink is a reference definition: [name]: target
	refLink = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*(\S+)`)
	// codePath is a path to a Markdown file written as code, `dir/FILE.md`:
	// a reader follows it like a link.
	codePath = regexp.MustCompile("`([^`\\s]*/[^`\\s]*\\.md)`")
	fence    = regexp.MustCompile("(?ms)^\\s*```.*?^\\s*```")
)

func documents(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(repoRoot, "README.md")}, docs...)
}

// targets are the relative link targets of a Markdown text, outside code blocks.
func targets(markdown string) []string {
	text := fence.ReplaceAllString(markdown, "")
	var out []string
	for _, re := range []*regexp.Regexp{inlineLink, refLink, codePath} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// anchors are the heading ids GitHub gives a Markdown text.
func anchors(markdown string) map[string]bool {
	ids := map[string]bool{}
	text := fence.ReplaceAllString(markdown, "")
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		id := b.String()
		for n := 1; ids[id]; n++ {
			id = fmt.Sprintf("%s-%d", b.String(), n) // GitHub numbers repeated headings
		}
		ids[id] = true
	}
	return ids
}

func TestDocumentLinksResolveInsideTheRepository(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range documents(t) {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(repoRoot, doc)
		for _, target := range targets(string(b)) {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue // the web, not the repository
			}
			path, anchor, _ := strings.Cut(target, "#")
			file := doc
			if path != "" {
				file = filepath.Join(filepath.Dir(doc), filepath.FromSlash(path))
				abs, err := filepath.Abs(file)
				if err != nil {
					t.Fatal(err)
				}
				if rel, err := filepath.Rel(root, abs); err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
					t.Errorf("%s links to %q, outside the repository", name, target)
					continue
				}
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s links to %q: no such file in the repository", name, target)
					continue
				}
			}
			if anchor == "" || !strings.HasSuffix(file, ".md") {
				continue
			}
			linked, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(linked))[anchor] {
				t.Errorf("%s links to %q: %s has no heading #%s", name, target, filepath.Base(file), anchor)
			}
		}
	}
}

func TestLinkCheckerFindsBrokenLinks(t *testing.T) {
	md := "See [design](../shared/DESIGN.md), [ok](docs/DESIGN.md#x), `../shared/STYLE.md`,\n" +
		"[ref]: internal/x.md\n```\n[in code](not/a/link.md)\n```\n"
	got := targets(md)
	want := []string{"../shared/DESIGN.md", "docs/DESIGN.md#x", "internal/x.md", "../shared/STYLE.md"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("targets = %q, want %q", got, want)
	}
	ids := anchors("# Top\n## The web UI and the JSON API\n## Top\n")
	for _, id := range []string{"top", "the-web-ui-and-the-json-api", "top-1"} {
		if !ids[id] {
			t.Errorf("anchors lack %q: %v", id, ids)
		}
	}
}
