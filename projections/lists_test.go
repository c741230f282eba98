package projections_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/projections"
)

// sharedNames lists the shared keys' names, sorted.
func sharedNames(tb testing.TB, p *projections.InfraKeys) []string {
	tb.Helper()
	keys, err := p.ListShared(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, 0, len(keys))
	for _, k := range keys {
		names = append(names, k.Name)
	}
	slices.Sort(names)
	return names
}

// Lists come from memory but see every acknowledged write, on the
// replica that wrote it and on another whose list was read before the
// write: a few new events are read one by one, many through a replay.
func TestInfraKeys_ListShared(t *testing.T) {
	ctx := context.Background()
	e := MustEnv(t)
	writer, _, intake := MustIntake(t, e)
	other, _, _ := MustIntake(t, e)
	svc := &domain.InfraKeyService{Repo: writer, Sealer: intake.Sealer}
	create := func(name string) {
		t.Helper()
		if _, err := svc.CreateShared(ctx, name, "", domain.KeyMaterial{PublicKey: MustPublicKey(t, name).Authorized}, meta()); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, want []string) {
		t.Helper()
		for _, p := range []*projections.InfraKeys{writer, other} {
			if got := sharedNames(t, p); !slices.Equal(got, want) {
				t.Errorf("shared keys = %v, want %v", got, want)
			}
		}
	}
	check(t, []string{})
	create("a")
	create("b")
	create("c")
	check(t, []string{"a", "b", "c"})
	if err := svc.DeleteShared(ctx, "b", meta()); err != nil {
		t.Fatal(err)
	}
	check(t, []string{"a", "c"})
	want := []string{"a", "c"}
	for i := range 40 { // more than an index reads one by one
		name := fmt.Sprintf("k%02d", i)
		create(name)
		want = append(want, name)
	}
	check(t, want)
}
