//go:build linux

package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// TestProgramsLoad loads both programs (with and without bpf_set_retval)
// where the test may: as root, the kernel's verifier accepts them or the
// test prints its log.
func TestProgramsLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading bpf programs needs root")
	}
	for _, setRetval := range []bool{false, true} {
		if setRetval && !haveSetRetval() {
			continue
		}
		for _, fam := range []int{4, 6} {
			b := New(Config{})
			spec := b.collectionSpec(false)
			spec.Programs = map[string]*ebpf.ProgramSpec{"p": connectProgram(fam, progOptions{setRetval: setRetval})}
			coll, err := ebpf.NewCollection(spec)
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("family %d set_retval %t: %+v", fam, setRetval, ve)
				}
				t.Fatalf("family %d set_retval %t: %v", fam, setRetval, err)
			}
			coll.Close()
		}
	}
	_ = asm.R0
}
