package threadcpu

import (
	"runtime"
	"testing"
	"time"
)

// TestNowCountsWork checks that a busy loop on a locked thread advances Now by roughly
// its duration (never by more than the wall time it took), and that sleeping does not.
func TestNowCountsWork(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if Now() == 0 {
		t.Skip("thread CPU time is not available on this system")
	}
	cpu0, wall0 := Now(), time.Now()
	x := 1.0
	for time.Since(wall0) < 50*time.Millisecond {
		for range 1000 {
			x = x*1.0000001 + 1e-9
		}
	}
	busy, wall := Now()-cpu0, time.Since(wall0)
	if busy <= 0 || busy > wall+10*time.Millisecond {
		t.Errorf("busy loop of %v wall used %v of thread CPU (x=%v)", wall, busy, x)
	}
	cpu1 := Now()
	time.Sleep(30 * time.Millisecond)
	if slept := Now() - cpu1; slept > 10*time.Millisecond {
		t.Errorf("sleeping 30ms used %v of thread CPU", slept)
	}
}
