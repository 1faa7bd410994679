package kernels

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
)

// TestPoolPanicReachesCaller checks that a panic in any chunk of a call, the caller's
// own or a worker's, is raised on the calling goroutine after the call has finished
// (so a server can recover it per request), and that the pool works afterwards.
func TestPoolPanicReachesCaller(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		panicAt int // chunk start that panics
		value   any
		want    string
		isErr   bool
	}{
		{name: "worker chunk, string", panicAt: 50, value: "index out of range", want: "index out of range"},
		{name: "worker chunk, error", panicAt: 50, value: errBoom, want: "boom", isErr: true},
		{name: "caller chunk", panicAt: 0, value: "caller failed", want: "caller failed"},
	}
	p := NewPool(2)
	defer p.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ran atomic.Int32
			got := func() (r any) {
				defer func() { r = recover() }()
				p.For(100, 1, func(lo, hi int) {
					ran.Add(int32(hi - lo))
					if lo == tc.panicAt {
						panic(tc.value)
					}
				})
				return nil
			}()
			if got == nil {
				t.Fatal("For returned without raising the chunk's panic")
			}
			if ran.Load() != 100 {
				t.Errorf("chunks covered %d of 100 indexes before the panic was raised", ran.Load())
			}
			msg := fmt.Sprint(got)
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "goroutine") {
				t.Errorf("panic value %q: want the original value %q and its stack", msg, tc.want)
			}
			if err, ok := got.(error); tc.isErr && (!ok || !errors.Is(err, errBoom)) {
				t.Errorf("panic value %#v does not wrap the original error", got)
			}
			// The pool is whole again: a normal call covers every index once.
			var sum atomic.Int64
			p.For(1000, 7, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					sum.Add(int64(i))
				}
			})
			if want := int64(999 * 1000 / 2); sum.Load() != want {
				t.Errorf("after the panic: sum %d, want %d", sum.Load(), want)
			}
		})
	}
}
