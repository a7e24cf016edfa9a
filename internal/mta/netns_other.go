//go:build !linux

package mta

// inNetNS runs fn: network namespaces are Linux's.
func inNetNS(procRoot string, pid int, fn func() error) error { return fn() }
