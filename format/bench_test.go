package format

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
)

const (
	benchLayers     = 8
	benchLayerBytes = 25 << 20 // 8 layers of 25 MiB: 200 MiB
)

// benchLayersData returns benchLayers sections of f16-like data: normally distributed
// values with per-channel scales (as keys have), as IEEE half-precision bits.
var benchLayersData = sync.OnceValue(func() [][]byte {
	r := rand.New(rand.NewPCG(7, 7))
	const dim = 64
	var scale [dim]float64
	for c := range scale {
		scale[c] = 0.05 + 2*r.Float64()*r.Float64()
	}
	layers := make([][]byte, benchLayers)
	for l := range layers {
		var e Encoder
		vals := make([]uint16, benchLayerBytes/2)
		for i := range vals {
			vals[i] = toHalf(float32(r.NormFloat64() * scale[i%dim]))
		}
		e.Uint16s(vals)
		layers[l] = e.Bytes()
	}
	return layers
})

// toHalf converts f to IEEE half precision by truncation, flushing subnormals to zero:
// enough to make data with the byte statistics of an f16 cache.
func toHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	switch {
	case exp <= 0:
		return sign
	case exp >= 31:
		return sign | 0x7c00
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

func benchWrite(b *testing.B, path string, compress bool) {
	w, err := Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Abort()
	for l, data := range benchLayersData() {
		if err := w.Add(fmt.Sprintf("layer.%d", l), data, SectionOptions{Compress: compress}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite writes 200 MiB of f16-like layers, synced to disk, stored raw or zstd.
func BenchmarkWrite(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(map[bool]string{false: "raw", true: "zstd"}[compress], func(b *testing.B) {
			benchLayersData()
			path := filepath.Join(b.TempDir(), "bench.sqz")
			b.SetBytes(benchLayers * benchLayerBytes)
			b.ResetTimer()
			for b.Loop() {
				benchWrite(b, path, compress)
			}
			b.StopTimer()
			r, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			b.ReportMetric(100*float64(r.Size())/float64(benchLayers*benchLayerBytes), "pct")
		})
	}
}

// BenchmarkRead opens the 200 MiB artifact and verifies every section (CRC-32C, and
// decompression for zstd): the work of loading it. The file is in the page cache.
func BenchmarkRead(b *testing.B) {
	for _, compress := range []bool{false, true} {
		b.Run(map[bool]string{false: "raw", true: "zstd"}[compress], func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bench.sqz")
			benchWrite(b, path, compress)
			b.SetBytes(benchLayers * benchLayerBytes)
			b.ResetTimer()
			for b.Loop() {
				r, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Verify(); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}
