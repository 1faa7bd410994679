package kernels

// reinits install the fastest implementations cpuHas allows into formats and into this
// package's function variables. A file with fast paths registers one with addReinit
// from its init; reinit runs them all again after cpuHas changed (tests do that).
var reinits []func()

// addReinit registers f and runs it once.
func addReinit(f func()) {
	reinits = append(reinits, f)
	f()
}

func reinit() {
	for _, f := range reinits {
		f()
	}
}
