package kernels

import (
	"runtime"
	"sync"
)

// Pool runs data-parallel work on a fixed number of goroutines. A Pool is safe for use
// by one caller at a time; the zero value is not usable, call NewPool.
//
// Handing out work does not allocate: the calling goroutine runs the first chunk
// itself and sends the others to parked worker goroutines by value.
type Pool struct {
	threads int
	work    []chan task // work[i] feeds worker i (i >= 1; the caller is worker 0)
	done    sync.WaitGroup
	exit    sync.WaitGroup
	close   sync.Once

	// MatMul's state, reused call after call so that a call does not allocate.
	rows    rowsJob
	gemm    gemmJob
	acts    []Activation
	xT      []float32        // MatMul's packed activations
	scratch []*workerScratch // per worker, grown on demand
}

// ranger is a unit of data-parallel work: run handles [lo, hi) on behalf of worker.
type ranger interface {
	run(worker, lo, hi int)
}

// funcRanger adapts a plain function (a func value converts to an interface without
// allocating).
type funcRanger func(lo, hi int)

func (f funcRanger) run(_, lo, hi int) { f(lo, hi) }

type task struct {
	job    ranger
	lo, hi int
}

// NewPool starts a pool of threads workers. threads <= 0 means runtime.NumCPU().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{threads: threads, work: make([]chan task, threads), scratch: make([]*workerScratch, threads)}
	for i := range p.scratch {
		p.scratch[i] = new(workerScratch)
	}
	for i := 1; i < threads; i++ {
		ch := make(chan task, 1)
		p.work[i] = ch
		p.exit.Add(1)
		go p.worker(i, ch)
	}
	return p
}

func (p *Pool) worker(id int, ch chan task) {
	defer p.exit.Done()
	for t := range ch {
		t.job.run(id, t.lo, t.hi)
		p.done.Done()
	}
}

// Threads is the number of goroutines the pool spreads work over.
func (p *Pool) Threads() int { return p.threads }

// Close stops the pool's goroutines. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.close.Do(func() {
		for _, ch := range p.work[1:] {
			close(ch)
		}
		p.exit.Wait()
	})
}

// For splits [0, n) into at most Threads() contiguous chunks whose bounds are multiples
// of grain (except the last), runs fn on each chunk concurrently and returns when all
// are done. The calling goroutine runs the first chunk itself.
func (p *Pool) For(n, grain int, fn func(lo, hi int)) {
	p.forRange(n, grain, funcRanger(fn))
}

// forRange is For for a ranger, which also learns which worker runs each chunk (for
// per-worker scratch space).
func (p *Pool) forRange(n, grain int, job ranger) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	units := (n + grain - 1) / grain
	parts := min(p.threads, units)
	if parts <= 1 {
		job.run(0, 0, n)
		return
	}
	bound := func(i int) int { return min(n, units*i/parts*grain) }
	p.done.Add(parts - 1)
	for i := 1; i < parts; i++ {
		p.work[i] <- task{job: job, lo: bound(i), hi: bound(i + 1)}
	}
	job.run(0, 0, bound(1))
	p.done.Wait()
}
