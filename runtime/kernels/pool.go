package kernels

import (
	"runtime"
	"sync"
)

// Pool runs data-parallel work on a fixed number of goroutines. A Pool is safe for use
// by one caller at a time; the zero value is not usable, call NewPool.
type Pool struct {
	threads int
	work    chan task
	wg      sync.WaitGroup
	close   sync.Once
}

type task struct {
	fn     func(lo, hi int)
	lo, hi int
	done   *sync.WaitGroup
}

// NewPool starts a pool of threads workers. threads <= 0 means runtime.NumCPU().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, work: make(chan task, threads)}
	for i := 1; i < threads; i++ { // the caller's goroutine is worker 0
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for t := range p.work {
				t.fn(t.lo, t.hi)
				t.done.Done()
			}
		}()
	}
	return p
}

// Threads is the number of goroutines the pool spreads work over.
func (p *Pool) Threads() int { return p.threads }

// Close stops the pool's goroutines. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.close.Do(func() {
		close(p.work)
		p.wg.Wait()
	})
}

// For splits [0, n) into at most Threads() contiguous chunks whose bounds are multiples
// of grain (except the last), runs fn on each chunk concurrently and returns when all
// are done. The calling goroutine runs the first chunk itself.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	units := (n + grain - 1) / grain
	parts := min(p.threads, units)
	if parts <= 1 {
		fn(0, n)
		return
	}
	var done sync.WaitGroup
	done.Add(parts - 1)
	bound := func(i int) int { return min(n, units*i/parts*grain) }
	for i := 1; i < parts; i++ {
		p.work <- task{fn: fn, lo: bound(i), hi: bound(i + 1), done: &done}
	}
	fn(0, bound(1))
	done.Wait()
}
