package kernels

import (
	"slices"
	"testing"
)

// TestPrefetch checks that Prefetch and PrefetchL2 run and changes nothing for lengths and offsets
// around cache lines, of bytes and of half floats, and for an empty slice.
func TestPrefetch(t *testing.T) {
	withFeatures(t, func(t *testing.T) {
		b := make([]byte, 4096)
		for i := range b {
			b[i] = byte(i * 7)
		}
		want := slices.Clone(b)
		for off := range 70 {
			for n := range 200 {
				Prefetch(b[off : off+n])
				Prefetch(bytesAsU16(b[2*(off/2) : 2*(off/2)+2*n]))
				PrefetchL2(b[off : off+n])
				PrefetchL2(bytesAsU16(b[2*(off/2) : 2*(off/2)+2*n]))
			}
		}
		Prefetch([]float32(nil))
		PrefetchL2([]float32(nil))
		if !slices.Equal(b, want) {
			t.Fatal("prefetching changed the data")
		}
	})
}
