//go:build !amd64

package crccopy

// kernelHere reports the kernel this CPU runs: none off amd64.
func kernelHere() kernel { return noKernel }

// kernels lists the kernels this CPU can run.
func kernels() []kernel { return []kernel{noKernel} }

func (k kernel) foldCopy(dst, src []byte, reg uint32) uint32 {
	panic("crccopy: no folding kernel on this architecture")
}
