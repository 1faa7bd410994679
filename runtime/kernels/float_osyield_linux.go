package kernels

import "syscall"

// osYield gives the processor to another runnable thread, if any (sched_yield). A
// spinning Pool goroutine calls it so that, on a machine with more runnable threads
// than cores, it does not hold a core that the thread it waits for needs.
func osYield() { syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
