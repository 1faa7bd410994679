// Package threadcpu reads the CPU time of the calling OS thread, which benchmarks on a
// shared machine report beside wall time: wall time also counts the time a thread
// waited for a core while other work ran.
package threadcpu
