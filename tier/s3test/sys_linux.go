package s3test

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// sysProcAttr makes the kernel kill versitygw when the test binary dies
// without running its cleanups (a -timeout panic, a kill).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// xattrOK reports whether dir's filesystem takes user extended attributes,
// where versitygw's posix backend keeps object metadata by default.
func xattrOK(dir string) bool {
	const name = "user.durastream.probe"
	if err := unix.Setxattr(dir, name, []byte("1"), 0); err != nil {
		return false
	}
	_ = unix.Removexattr(dir, name)
	return true
}
