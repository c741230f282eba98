package domain_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDomainImports guards the layering: domain/ speaks the language of the
// problem and knows nothing of NATS, Echo or the adapters that use them.
// It lists every package domain/... and its tests depend on, however
// indirectly.
func TestDomainImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const module = "github.com/infrakeys/infrakeys/"
	forbidden := []string{"github.com/nats-io/", "github.com/labstack/"}
	var deps int
	for _, dep := range strings.Fields(string(out)) {
		deps++
		// Test packages show as "p [p.test]"; Fields splits off the bracket.
		if strings.HasPrefix(dep, "[") {
			continue
		}
		for _, prefix := range forbidden {
			if strings.HasPrefix(dep, prefix) {
				t.Errorf("domain depends on %s", dep)
			}
		}
		if rest, ok := strings.CutPrefix(dep, module); ok && rest != "domain" && !strings.HasPrefix(rest, "domain/") && !strings.HasPrefix(rest, "domain_test") && !strings.HasPrefix(rest, "domain.test") {
			t.Errorf("domain depends on the adapter %s", dep)
		}
	}
	if deps == 0 {
		t.Fatal("go list listed nothing")
	}
}
