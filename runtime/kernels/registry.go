package kernels

// reinits are functions that install the fastest implementations cpuHas allows into
// formats and the function variables of this package. Each file with fast paths adds
// one in its init; reinit runs them all (after cpuHas changed, e.g. in tests).
var reinits []func()

func reinit() {
	for _, f := range reinits {
		f()
	}
}
