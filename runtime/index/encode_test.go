package index

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"squeeze/runtime/kernels"
)

// smallTree builds a two-level tree over 300 keys of dimension 4: 6 coarse clusters of
// 5 fine clusters each, every fine cluster holding 10 keys, positions shuffled.
func smallTree(t testing.TB) *Tree {
	r := rand.New(rand.NewPCG(11, 0))
	cents := func(n int) []float32 {
		c := make([]float32, n*4)
		for i := range c {
			c[i] = float32(r.NormFloat64())
		}
		return c
	}
	coarse := Level{Centroids: cents(6), Start: make([]int32, 7)}
	fine := Level{Centroids: cents(30), Start: make([]int32, 31)}
	for j := range coarse.Start {
		coarse.Start[j] = int32(5 * j)
	}
	for j := range fine.Start {
		fine.Start[j] = int32(10 * j)
	}
	order := make([]int32, 300)
	for i, p := range r.Perm(300) {
		order[i] = int32(p)
	}
	tr, err := New(4, []Level{coarse, fine}, order)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// roundHalf returns v rounded to half floats.
func roundHalf(v []float32) []float32 {
	r := make([]float32, len(v))
	for i, x := range v {
		r[i] = kernels.F16ToF32(kernels.F32ToF16(x))
	}
	return r
}

// TestMarshalRoundTrip encodes trees with positions of 2 and 4 bytes: the decoded tree
// has the centroids rounded to half floats and everything else equal, and encodes to the
// same bytes.
func TestMarshalRoundTrip(t *testing.T) {
	small := smallTree(t)
	far := smallTree(t) // positions beyond 16 bits
	for i := range far.order {
		far.order[i] += 70000
	}
	sorted := sortedTree(t, 0)
	sortedFar := sortedTree(t, 1<<28)
	for _, tc := range []struct {
		name  string
		tr    *Tree
		width uint32
	}{{"16-bit positions", small, 2}, {"32-bit positions", far, 4}, {"deltas", sorted, 0}, {"long deltas", sortedFar, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.tr
			b, err := tr.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var got Tree
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			if got.Dim() != tr.Dim() || got.Len() != tr.Len() || got.Levels() != tr.Levels() || !slices.Equal(got.Order(), tr.Order()) {
				t.Fatal("header or order differs")
			}
			for l := range tr.Levels() {
				if !slices.Equal(got.Centroids(l), roundHalf(tr.Centroids(l))) || !slices.Equal(got.Start(l), tr.Start(l)) || !slices.Equal(got.Counts(l), tr.Counts(l)) {
					t.Fatalf("level %d differs", l)
				}
			}
			if again, err := got.MarshalBinary(); err != nil || !slices.Equal(again, b) {
				t.Fatalf("decoded tree encodes differently (%v)", err)
			}
			// The layout: header, level table, then level 0's offsets; half-float
			// centroids and positions of the width given.
			if string(b[:4]) != "SQZT" || binary.LittleEndian.Uint32(b[4:]) != 2 || binary.LittleEndian.Uint32(b[8:]) != 4 ||
				binary.LittleEndian.Uint32(b[12:]) != 2 || binary.LittleEndian.Uint32(b[16:]) != 300 ||
				binary.LittleEndian.Uint32(b[20:]) != tc.width ||
				binary.LittleEndian.Uint32(b[24:]) != 6 || binary.LittleEndian.Uint32(b[28:]) != 30 {
				t.Fatalf("header % x", b[:32])
			}
			want := 32 + 4*(7+31) + 2*4*(6+30) + int(tc.width)*300
			if tc.width == 0 { // each cluster's first position, then its differences
				for i, p := range tr.order {
					if i%10 > 0 {
						p -= tr.order[i-1]
					}
					want += len(binary.AppendUvarint(nil, uint64(p)))
				}
			}
			if len(b) != want {
				t.Fatalf("%d bytes, want %d", len(b), want)
			}
		})
	}
}

// sortedTree is smallTree with the positions ascending within each fine cluster, from
// offset on, so that the tree stores them by deltas.
func sortedTree(t testing.TB, offset int32) *Tree {
	tr := smallTree(t)
	for i := range tr.order {
		tr.order[i] += offset
	}
	for j := range 30 {
		slices.Sort(tr.order[10*j : 10*j+10])
	}
	return tr
}

// TestUnmarshalDeltasCorrupt damages an order stored by deltas.
func TestUnmarshalDeltasCorrupt(t *testing.T) {
	good, err := sortedTree(t, 0).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	order := 32 + 4*(7+31) + 2*4*(6+30) // the first cluster's first position, one or two bytes
	first := len(binary.AppendUvarint(nil, uint64(binary.LittleEndian.Uint16(good[order:]))))
	if binary.LittleEndian.Uint32(good[20:]) != 0 {
		t.Fatal("positions not stored by deltas")
	}
	tests := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing byte", func(b []byte) []byte { return append(b, 1) }},
		{"zero difference", func(b []byte) []byte { b[order+first] = 0; return b }},
		{"long uvarint", func(b []byte) []byte {
			return slices.Concat(b[:order+first], []byte{b[order+first] | 0x80, 0}, b[order+first+1:])
		}},
		{"too short for its positions", func(b []byte) []byte { return b[:order+200] }},
		{"fixed width where deltas hold", func(b []byte) []byte {
			tr := sortedTree(t, 0)
			binary.LittleEndian.PutUint32(b[20:], 2)
			b = b[:order]
			for _, p := range tr.order {
				b = binary.LittleEndian.AppendUint16(b, uint16(p))
			}
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Tree
			if err := got.UnmarshalBinary(tc.mangle(slices.Clone(good))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestUnmarshalCorrupt(t *testing.T) {
	tr := smallTree(t)
	good, err := tr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	put := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	put16 := func(off int, v uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint16(b[off:], v); return b }
	}
	level0 := 24 + 4*2        // level 0's Start
	cent0 := level0 + 4*(6+1) // level 0's centroids
	order := len(good) - 2*300
	tests := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:23] }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }},
		{"magic", put(0, 0x12345678)},
		{"version 1", put(4, 1)},
		{"version 3", put(4, 3)},
		{"dim 0", put(8, 0)},
		{"dim huge", put(8, 1<<30)},
		{"levels 0", put(12, 0)},
		{"levels huge", put(12, 1<<31)},
		{"keys 0", put(16, 0)},
		{"position width 3", put(20, 3)},
		{"position width 4", put(20, 4)},
		{"wide positions that fit 16 bits", func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[20:], 4)
			o := b[order : order+2*300]
			wide := make([]byte, 0, 4*300)
			for i := range 300 {
				wide = binary.LittleEndian.AppendUint32(wide, uint32(binary.LittleEndian.Uint16(o[2*i:])))
			}
			return append(b[:order], wide...)
		}},
		{"clusters 0", put(24, 0)},
		{"clusters huge", put(28, math.MaxUint32)},
		{"first offset", put(level0, 1)},
		{"offset decreases", put(level0+4, 29)},
		{"offset beyond int32", put(level0+8, 1<<31)},
		{"last offset", put(level0+4*6, 29)},
		{"NaN centroid", put16(cent0, 0x7e00)},
		{"Inf centroid", put16(cent0+2, 0xfc00)},
		{"duplicate position", func(b []byte) []byte {
			copy(b[order:order+2], b[order+2:order+4])
			return b
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Tree
			err := got.UnmarshalBinary(tc.mangle(slices.Clone(good)))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if got.levels != nil {
				t.Fatal("tree modified on error")
			}
		})
	}
}

func FuzzUnmarshal(f *testing.F) {
	tr := smallTree(f)
	good, err := tr.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:100])
	deltas, err := sortedTree(f, 0).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(deltas)
	tiny, err := New(1, []Level{{Centroids: []float32{1, -1}, Start: []int32{0, 1, 1}}}, []int32{3})
	if err != nil {
		f.Fatal(err)
	}
	b, err := tiny.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Tree
		if err := tr.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := tr.MarshalBinary()
		if err != nil || !slices.Equal(again, data) {
			t.Fatalf("round trip differs (err %v)", err)
		}
		// A decoded tree is safe to search.
		q := make([]float32, 2*tr.Dim())
		for i := range q {
			q[i] = float32(i%3) - 1
		}
		var s Searcher
		var sel Selection
		logTau := make([]float32, tr.Levels()) // one level's drop of 1 nat per step up
		for l := range logTau {
			logTau[l] = float32(-math.Log(float64(tr.Len())) - float64(tr.Levels()-1-l))
		}
		tr.Lookup(&s, q, 2, logTau, &sel)
		tr.LookupFlat(&s, q, 1, -1, &sel)
		if sel.Keys > tr.Len() {
			t.Fatalf("%d keys selected of %d", sel.Keys, tr.Len())
		}
	})
}
