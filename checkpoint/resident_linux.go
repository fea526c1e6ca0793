package checkpoint

import "syscall"

// dontNeed advises the kernel that the n bytes of the memory map at addr
// are not needed now (MADV_DONTNEED). Errors are ignored: the advice only
// changes what is resident.
func dontNeed(addr, n uintptr) {
	syscall.Syscall(syscall.SYS_MADVISE, addr, n, syscall.MADV_DONTNEED)
}
