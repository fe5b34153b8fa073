// Command pauser sleeps in the pause(2) system call until a signal arrives,
// so that a lab guest has a task whose stack holds __x64_sys_pause (see
// ../patches/lp_stall/README.md). It prints "pausing" once it is about to
// call pause, and how pause returned.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

func main() {
	runtime.LockOSThread()
	fmt.Println("pausing")
	for {
		_, _, errno := syscall.Syscall(syscall.SYS_PAUSE, 0, 0, 0)
		fmt.Fprintf(os.Stderr, "pause returned: %v\n", errno)
	}
}
