//go:build !linux

package checkpoint

// dontNeed does nothing where MADV_DONTNEED's effect on a shared file
// mapping is not the same as Linux's.
func dontNeed(addr, n uintptr) {}
