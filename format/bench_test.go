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

// benchTextData is 200 MiB of repetitive text in benchLayers sections, which zstd
// compresses well: it measures decompression where benchLayersData does not (zstd finds
// too little to gain in f16 data, so those sections are stored raw).
var benchTextData = sync.OnceValue(func() [][]byte {
	text := textBytes(benchLayerBytes)
	layers := make([][]byte, benchLayers)
	for l := range layers {
		layers[l] = text
	}
	return layers
})

// benchCases are the data and storage the benchmarks write and read.
var benchCases = []struct {
	name     string
	data     func() [][]byte
	compress bool
}{
	{"f16/raw", benchLayersData, false},
	{"f16/zstd", benchLayersData, true},
	{"text/zstd", benchTextData, true},
}

func benchWrite(b *testing.B, path string, layers [][]byte, compress bool) {
	w, err := Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Abort()
	for l, data := range layers {
		if err := w.Add(fmt.Sprintf("layer.%d", l), data, SectionOptions{Compress: compress}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWrite writes 200 MiB in 8 sections, synced to disk, stored raw or (when it pays)
// zstd. The pct metric is the file size in percent of the raw size.
func BenchmarkWrite(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			layers := c.data()
			path := filepath.Join(b.TempDir(), "bench.sqz")
			b.SetBytes(benchLayers * benchLayerBytes)
			b.ResetTimer()
			for b.Loop() {
				benchWrite(b, path, layers, c.compress)
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

// BenchmarkRead opens a 200 MiB artifact and verifies every section (CRC-32C, and
// decompression for zstd): the work of loading it. The file is in the page cache.
func BenchmarkRead(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bench.sqz")
			benchWrite(b, path, c.data(), c.compress)
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
