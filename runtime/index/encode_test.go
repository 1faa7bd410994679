package index

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
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

func TestMarshalRoundTrip(t *testing.T) {
	tr := smallTree(t)
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
		if !slices.Equal(got.Centroids(l), tr.Centroids(l)) || !slices.Equal(got.Start(l), tr.Start(l)) || !slices.Equal(got.Counts(l), tr.Counts(l)) {
			t.Fatalf("level %d differs", l)
		}
	}
	// The layout: header, level table, then level 0's offsets.
	if string(b[:4]) != "SQZT" || binary.LittleEndian.Uint32(b[4:]) != 1 || binary.LittleEndian.Uint32(b[8:]) != 4 ||
		binary.LittleEndian.Uint32(b[12:]) != 2 || binary.LittleEndian.Uint32(b[16:]) != 300 ||
		binary.LittleEndian.Uint32(b[20:]) != 6 || binary.LittleEndian.Uint32(b[24:]) != 30 {
		t.Fatalf("header % x", b[:28])
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
	level0 := 20 + 4*2        // level 0's Start
	cent0 := level0 + 4*(6+1) // level 0's centroids
	order := len(good) - 4*300
	tests := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:19] }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"trailing byte", func(b []byte) []byte { return append(b, 0) }},
		{"magic", put(0, 0x12345678)},
		{"version", put(4, 2)},
		{"dim 0", put(8, 0)},
		{"dim huge", put(8, 1<<30)},
		{"levels 0", put(12, 0)},
		{"levels huge", put(12, 1<<31)},
		{"keys 0", put(16, 0)},
		{"clusters 0", put(20, 0)},
		{"clusters huge", put(24, math.MaxUint32)},
		{"first offset", put(level0, 1)},
		{"offset decreases", put(level0+4, 29)},
		{"offset beyond int32", put(level0+8, 1<<31)},
		{"last offset", put(level0+4*6, 29)},
		{"NaN centroid", put(cent0, math.Float32bits(float32(math.NaN())))},
		{"Inf centroid", put(cent0+4, math.Float32bits(float32(math.Inf(-1))))},
		{"duplicate position", func(b []byte) []byte {
			copy(b[order:order+4], b[order+4:order+8])
			return b
		}},
		{"negative position", put(order, math.MaxUint32)},
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
