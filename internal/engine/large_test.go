package engine

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Importing 10,000 allowed users, then 3, then 10,000 again stores and
// enforces exactly what each file says (the benchmarks BenchmarkImport10k and
// BenchmarkImport10kTo3 measure how long it takes).
func TestImportLargeListsStoresExactlyTheFile(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	wantUIDs := func(n int) []uint32 {
		uids := []uint32{0}
		for i := range n {
			uids = append(uids, uint32(20000+i))
		}
		return uids
	}
	for _, n := range []int{10000, 3, 10000, 0} {
		file := numberedFile(n)
		must(t)(f.eng.Import(ctx, admin, file, "fleet.toml"))
		p, _ := f.stored(t)
		var got []string
		for _, u := range p.Users {
			got = append(got, u.Ref())
		}
		if diff := cmp.Diff(file.AllowedUsers, got); n > 0 && diff != "" {
			t.Fatalf("after importing %d users, stored users (-want +got):\n%s", n, diff)
		}
		if n == 0 && len(got) != 0 {
			t.Fatalf("after importing no users, %d stored", len(got))
		}
		if diff := cmp.Diff(wantUIDs(n), f.installedUIDs(t)); diff != "" {
			t.Fatalf("after importing %d users, enforced uids (-want +got):\n%s", n, diff)
		}
	}
}

// A file naming one user twice, even among 10,000, is refused with the
// field of the second mention.
func TestImportLargeListRefusesDuplicates(t *testing.T) {
	f := newFixture(t)
	file := numberedFile(10000)
	file.AllowedUsers = append(file.AllowedUsers, "alice", "20017")
	_, err := f.eng.Import(context.Background(), admin, file, "fleet.toml")
	if err == nil {
		t.Fatal("Import() of a file listing uid 20017 twice succeeded")
	}
	if want := "allowed_users[10001]: user 20017: already allowed"; !strings.Contains(err.Error(), want) {
		t.Errorf("Import() = %v, want a line %q", err, want)
	}
}
