package kmod

// sys is the seam between the package and the kernel's system calls. The
// real implementation (sys_linux.go) calls finit_module, delete_module and
// reads /dev/kmsg; other systems get one that returns errors wrapping
// [ErrNotSupported]; tests substitute a fake. Implementations return
// errors that wrap the package's sentinels (see mapErrno) so callers test
// them with errors.Is.
type sys interface {
	// finitModule loads the module open at fd with the given parameters.
	finitModule(fd int, params string, flags int) error
	// deleteModule removes the named module; flags is deleteNonBlock or 0.
	deleteModule(name string, flags int) error
	// readKmsg returns the records in the kernel log buffer (path is
	// /dev/kmsg under the root), oldest first, without blocking.
	readKmsg(path string) ([][]byte, error)
}

// osSys is the seam on this system.
type osSys struct{}

func (osSys) finitModule(fd int, params string, flags int) error {
	return finitModule(fd, params, flags)
}

func (osSys) deleteModule(name string, flags int) error { return deleteModule(name, flags) }

func (osSys) readKmsg(path string) ([][]byte, error) { return readKmsg(path) }

// System call names, as errors and mapErrno use them.
const (
	opFinit  = "finit_module"
	opDelete = "delete_module"
)
