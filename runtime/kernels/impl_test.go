package kernels

import "testing"

// withFeatures runs test once per instruction-set level this CPU supports, from the
// pure-Go reference up, with the faster features switched off for the slower runs.
// Fast paths must consult cpuHas at call time (or re-register via reinit) for this to
// reach them.
func withFeatures(t *testing.T, test func(t *testing.T)) {
	saved := cpuHas
	defer func() { cpuHas = saved; reinit() }()
	levels := []struct {
		name string
		on   bool
		set  func()
	}{
		{"generic", true, func() {
			cpuHas = features{}
		}},
		{"avx2", saved.AVX2FMA, func() { cpuHas = saved; cpuHas.AVX512, cpuHas.AVX512VNNI, cpuHas.AVX512BF16 = false, false, false }},
		{"avx512", saved.AVX512, func() { cpuHas = saved }},
	}
	for _, l := range levels {
		if !l.on {
			continue
		}
		l.set()
		reinit()
		t.Run(l.name, test)
	}
}
