package kvquant

import (
	"errors"
	"math"
	"testing"
)

func TestDatatypes(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(int) (Datatype, error)
	}{{"uniform", Uniform}, {"nf", NormalFloat}} {
		for bits := MinBits; bits <= MaxBits; bits++ {
			dt, err := tc.make(bits)
			if err != nil {
				t.Fatalf("%s%d: %v", tc.name, bits, err)
			}
			if dt.Bits() != bits || len(dt.Signposts) != 1<<bits {
				t.Fatalf("%s%d: %d bits, %d signposts", tc.name, bits, dt.Bits(), len(dt.Signposts))
			}
			if dt.Signposts[0] != -1 || dt.Signposts[len(dt.Signposts)-1] != 1 {
				t.Errorf("%s%d: ends %v %v, want -1 and 1", tc.name, bits, dt.Signposts[0], dt.Signposts[len(dt.Signposts)-1])
			}
			for c, s := range dt.Signposts {
				if got := dt.Code(s); int(got) != c {
					t.Errorf("%s%d: Code(signpost %d = %v) = %d", tc.name, bits, c, s, got)
				}
			}
		}
	}
	nf4, _ := NormalFloat(4)
	// QLoRA's NF4 values (bitsandbytes), to 4 decimals.
	want := []float64{-1, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0, 0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1}
	for i, w := range want {
		if math.Abs(float64(nf4.Signposts[i])-w) > 1e-4 {
			t.Errorf("nf4 signpost %d = %.4f, want %.4f", i, nf4.Signposts[i], w)
		}
	}
}

func TestDatatypeCode(t *testing.T) {
	dt, err := NewDatatype([]float32{-1, -0.2, 0.1, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		u    float32
		want uint8
	}{{-5, 0}, {-1, 0}, {-0.6, 0}, {-0.59, 1}, {-0.05, 1}, {-0.04, 2}, {0.55, 2}, {0.56, 3}, {7, 3}, {float32(math.NaN()), 0}} {
		if got := dt.Code(tc.u); got != tc.want {
			t.Errorf("Code(%v) = %d, want %d", tc.u, got, tc.want)
		}
	}
}

func TestNewDatatypeInvalid(t *testing.T) {
	for _, s := range [][]float32{
		{-1, 0, 1},
		{-1, 0.5, 0, 1},
		{-1, 0, 0, 1},
		{-2, 0, 0.5, 1},
		{-1, 0, 0.5, float32(math.NaN())},
		make([]float32, 32),
	} {
		if _, err := NewDatatype(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewDatatype(%v) = %v, want ErrInvalid", s, err)
		}
	}
	if _, err := Uniform(5); !errors.Is(err, ErrInvalid) {
		t.Errorf("Uniform(5): %v", err)
	}
}

func TestQNorm(t *testing.T) {
	dt, _ := Uniform(2)
	// Values clustered near ±0.5 quantize to ±1/3: Q-Norm moves the levels to match
	// the mean and spread.
	u := []float32{-0.5, -0.5, 0.5, 0.5, float32(math.NaN())}
	q := dt.WithQNorm(u)
	if q.Signposts[1] != dt.Signposts[1] {
		t.Fatal("Q-Norm changed the signposts")
	}
	if got := q.Levels[1]; math.Abs(float64(got)+0.5) > 1e-6 {
		t.Errorf("level 1 = %v, want -0.5", got)
	}
	if got := q.Levels[2]; math.Abs(float64(got)-0.5) > 1e-6 {
		t.Errorf("level 2 = %v, want 0.5", got)
	}
	if same := dt.WithQNorm(nil); &same.Levels[0] != &dt.Levels[0] {
		t.Error("Q-Norm without data changed the datatype")
	}
}
