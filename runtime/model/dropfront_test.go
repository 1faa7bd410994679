package model

import (
	"slices"
	"testing"

	"squeeze/runtime/kernels"
	"squeeze/runtime/model/modeltest"
)

// TestDropFront: dropping n positions from the front leaves the later positions' keys
// and values at positions shifted down by n, in both storage types, and refuses counts
// outside [0, Len()].
func TestDropFront(t *testing.T) {
	m := loadSpec(t, modeltest.Spec{})
	cfg := &m.Config
	p := kernels.NewPool(2)
	defer p.Close()
	for _, kind := range []CacheType{CacheF32, CacheF16} {
		for _, n := range []int{0, 1, 7, 20} {
			c, err := m.NewCache(40, kind)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Forward(p, c, randomTokens(20, cfg.Vocab, 3), nil, nil); err != nil {
				t.Fatal(err)
			}
			read := func(layer, head, from, to int) (k, v []float32) {
				k, err := c.Keys(layer, head, from, to, make([]float32, (to-from)*cfg.HeadDim))
				if err != nil {
					t.Fatal(err)
				}
				v, err = c.Values(layer, head, from, to, make([]float32, (to-from)*cfg.HeadDim))
				if err != nil {
					t.Fatal(err)
				}
				return k, v
			}
			type kv struct{ k, v []float32 }
			var want []kv
			for l := range cfg.Layers {
				for h := range cfg.KVHeads {
					k, v := read(l, h, n, 20)
					want = append(want, kv{k, v})
				}
			}
			if err := c.DropFront(n); err != nil {
				t.Fatal(err)
			}
			if c.Len() != 20-n {
				t.Fatalf("%v drop %d: Len %d", kind, n, c.Len())
			}
			i := 0
			for l := range cfg.Layers {
				for h := range cfg.KVHeads {
					k, v := read(l, h, 0, 20-n)
					if !slices.Equal(k, want[i].k) || !slices.Equal(v, want[i].v) {
						t.Fatalf("%v drop %d: layer %d head %d moved wrong", kind, n, l, h)
					}
					i++
				}
			}
			for _, bad := range []int{-1, c.Len() + 1} {
				if err := c.DropFront(bad); err == nil {
					t.Fatalf("%v: DropFront(%d) of %d positions accepted", kind, bad, c.Len())
				}
			}
		}
	}
}
