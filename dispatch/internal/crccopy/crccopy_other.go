//go:build !amd64

package crccopy

func foldable(int) int { return 0 }

func foldCopy(dst, src []byte, reg uint32) uint32 {
	panic("crccopy: no folding kernel on this architecture")
}
