package kernels

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Pool runs data-parallel work on a fixed number of goroutines. A Pool is safe for use
// by one caller at a time; the zero value is not usable, call NewPool.
//
// Handing out work does not allocate and is cheap: the calling goroutine runs the first
// chunk itself; workers spin for a short while (poolSpin) after each chunk, watching for
// the next one, before they park. Decoding calls the pool about 70 times per token with
// serial work in between, so a wake-up through the scheduler (microseconds) would cost
// a noticeable share of the token's time. Spinning goroutines yield now and then, so
// other goroutines still run; an idle Pool costs nothing after poolSpin.
type Pool struct {
	threads int
	spin    time.Duration
	workers []poolWorker  // workers[i] for i >= 1; the caller is worker 0
	pending atomic.Int32  // chunks handed out and not yet finished
	gen     uint64        // the caller's call counter (tasks carry it)
	parked  atomic.Uint64 // the call whose caller sleeps on done; 0 for none
	done    chan struct{}
	exit    sync.WaitGroup
	close   sync.Once
	// panicked holds the first panic of the current call's chunks, recovered where it
	// happened so that it reaches the caller instead of ending the process.
	panicked atomic.Pointer[chunkPanic]

	// MatMul's state, reused call after call so that a call does not allocate.
	rows    rowsJob
	gemm    gemmJob
	acts    []Activation
	xT      []float32        // MatMul's packed activations
	scratch []*workerScratch // per worker, grown on demand
	// MatVecRows' output of the 4-row kernel for one row (a local array handed to
	// the kernel through a function value would escape to the heap on every call).
	rowOut [4]float32
}

// poolSpin is how long an idle worker (or the waiting caller) polls before parking;
// NewPool reads it (tests lower it to reach the parking paths more often).
var poolSpin = 100 * time.Microsecond

type poolWorker struct {
	seq    atomic.Uint32 // bumped by the caller for each task
	parked atomic.Bool   // the worker sleeps on wake
	wake   chan struct{}
	task   task
	_      [64]byte // keep workers' hot fields on separate cache lines
}

// ranger is a unit of data-parallel work: run handles [lo, hi) on behalf of worker.
type ranger interface {
	run(worker, lo, hi int)
}

// funcRanger adapts a plain function (a func value converts to an interface without
// allocating).
type funcRanger func(lo, hi int)

func (f funcRanger) run(_, lo, hi int) { f(lo, hi) }

// task is one chunk of work of call gen; a nil job tells the worker to exit.
type task struct {
	job    ranger
	lo, hi int
	gen    uint64
}

// NewPool starts a pool of threads workers. threads <= 0 means runtime.NumCPU().
func NewPool(threads int) *Pool {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	p := &Pool{
		threads: threads,
		spin:    poolSpin,
		workers: make([]poolWorker, threads),
		done:    make(chan struct{}, 1),
		scratch: make([]*workerScratch, threads),
	}
	for i := range p.scratch {
		p.scratch[i] = new(workerScratch)
	}
	for i := 1; i < threads; i++ {
		p.workers[i].wake = make(chan struct{}, 1)
		p.exit.Add(1)
		go p.worker(i)
	}
	return p
}

// spinUntil polls cond for up to d and reports whether it became true. It yields now
// and then to goroutines (the one it waits for may be queued on this very P: a
// goroutine woken from a channel is queued where it was woken), and once it has waited
// longer than threadYieldAfter, to threads too (on a busy machine the thread it waits
// for may need this core). A thread yield is a system call: made from the start of
// every wait, as it was, it took 6-10% of a decode step's CPU and made plain decoding
// 11-14% slower on gocode-shared, where most waits last a few microseconds.
func spinUntil(d time.Duration, cond func() bool) bool {
	var start time.Time
	for i := 0; ; i++ {
		if cond() {
			return true
		}
		if i&63 == 63 {
			runtime.Gosched()
			if start.IsZero() {
				start = time.Now()
				continue
			}
			waited := time.Since(start)
			if waited > d {
				return false
			}
			if waited > threadYieldAfter {
				osYield()
			}
		}
	}
}

// threadYieldAfter is how long spinUntil waits before it also yields its thread.
const threadYieldAfter = 20 * time.Microsecond

func (p *Pool) worker(id int) {
	defer p.exit.Done()
	w := &p.workers[id]
	var seen uint32
	for {
		p.awaitTask(w, seen)
		seen = w.seq.Load()
		t := w.task
		if t.job == nil {
			return
		}
		p.runChunk(t.job, id, t.lo, t.hi)
		// The caller may return (and start the next call) as soon as pending is 0, so
		// the wake-up names the call: a late one for an earlier call does nothing.
		if p.pending.Add(-1) == 0 && p.parked.Load() == t.gen && p.parked.CompareAndSwap(t.gen, 0) {
			p.done <- struct{}{}
		}
	}
}

// awaitTask returns once worker w's sequence number differs from seen: it spins, then
// parks. A wake-up may be stale (the caller can find the flag of a later parking of the
// same worker and wake that one), so a woken worker checks again.
func (p *Pool) awaitTask(w *poolWorker, seen uint32) {
	for w.seq.Load() == seen {
		if spinUntil(p.spin, func() bool { return w.seq.Load() != seen }) {
			return
		}
		w.parked.Store(true)
		if w.seq.Load() != seen { // a task came in while parking
			if !w.parked.CompareAndSwap(true, false) {
				<-w.wake // the caller saw us parked and is sending a wake-up
			}
			return
		}
		<-w.wake
	}
}

// post hands task t to worker i.
func (p *Pool) post(i int, t task) {
	w := &p.workers[i]
	w.task = t
	w.seq.Add(1)
	if w.parked.Load() && w.parked.CompareAndSwap(true, false) {
		w.wake <- struct{}{}
	}
}

// wait returns once every chunk of the current call has finished.
func (p *Pool) wait() {
	if spinUntil(p.spin, func() bool { return p.pending.Load() == 0 }) {
		return
	}
	p.parked.Store(p.gen)
	if p.pending.Load() == 0 && p.parked.CompareAndSwap(p.gen, 0) {
		return
	}
	<-p.done
}

// Threads is the number of goroutines the pool spreads work over.
func (p *Pool) Threads() int { return p.threads }

// Close stops the pool's goroutines. The pool must not be used afterwards.
func (p *Pool) Close() {
	p.close.Do(func() {
		for i := 1; i < p.threads; i++ {
			p.post(i, task{})
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

// chunking is how forRange cuts [0, n) for a grain: parts chunks (at most one per
// thread), each a whole number of grains but the last.
type chunking struct{ n, grain, units, parts int }

// chunks returns forRange's cut of [0, n) (n >= 1, grain >= 1) on p.
func (p *Pool) chunks(n, grain int) chunking {
	units := (n + grain - 1) / grain
	return chunking{n: n, grain: grain, units: units, parts: min(p.threads, units)}
}

// bound returns where chunk k begins (k = parts: n).
func (c chunking) bound(k int) int { return min(c.n, c.units*k/c.parts*c.grain) }

// forRange is For for a ranger, which also learns which worker runs each chunk (for
// per-worker scratch space).
func (p *Pool) forRange(n, grain int, job ranger) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	c := p.chunks(n, grain)
	parts, bound := c.parts, c.bound
	if parts <= 1 {
		job.run(0, 0, n)
		return
	}
	p.gen++
	p.pending.Store(int32(parts - 1))
	for i := 1; i < parts; i++ {
		p.post(i, task{job: job, lo: bound(i), hi: bound(i + 1), gen: p.gen})
	}
	p.runChunk(job, 0, 0, bound(1))
	p.wait()
	if c := p.panicked.Swap(nil); c != nil {
		c.raise()
	}
}

// chunkPanic is a panic recovered from one chunk of a call, with the stack of the
// goroutine that panicked.
type chunkPanic struct {
	value any
	stack []byte
}

// raise panics again, on the calling goroutine, with the recovered value and the stack
// where it first happened; an error value stays reachable through errors.Is and As.
func (c *chunkPanic) raise() {
	if err, ok := c.value.(error); ok {
		panic(fmt.Errorf("kernels: pool chunk panicked: %w\n%s", err, c.stack))
	}
	panic(fmt.Sprintf("kernels: pool chunk panicked: %v\n%s", c.value, c.stack))
}

// runChunk runs one chunk of a call, recording a panic instead of letting it unwind a
// worker goroutine (which would end the process) or the caller before the workers'
// chunks are done (which would leave the pool mid-call). forRange raises the first
// recorded panic once the whole call has finished.
func (p *Pool) runChunk(job ranger, worker, lo, hi int) {
	defer func() {
		if r := recover(); r != nil {
			p.panicked.CompareAndSwap(nil, &chunkPanic{value: r, stack: debug.Stack()})
		}
	}()
	job.run(worker, lo, hi)
}
