package tracetool

// ddmin is Zeller and Hildebrandt's delta debugging minimization over
// the units 0..n-1, given that test holds for all of them. It returns a
// subset for which test holds and which is 1-minimal: removing any one
// more unit makes test fail (unless stop ended the search early, in
// which case it returns the smallest passing subset found so far).
//
// It splits the current subset into g chunks (g = 2 at first) and tries
// each chunk alone, then each complement (the subset less one chunk);
// a passing chunk becomes the subset with g = 2, a passing complement
// with g = max(g-1, 2); when neither passes, g doubles, up to one unit
// per chunk. At g = len(subset) the complements are the subset less each
// single unit, so when none passes the subset is 1-minimal. The empty
// subset is tried first, so that a single unit left is minimal too.
// Subsets passed to test are in increasing order; test may keep them
// only until it returns.
func ddmin(n int, test func(keep []int) bool, stop func() bool) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = i
	}
	if n == 0 {
		return c
	}
	if test(nil) {
		return c[:0]
	}
	g := 2
	scratch := make([]int, 0, n)
	for len(c) >= 2 && !stop() {
		g = min(g, len(c))
		bounds := func(i int) (int, int) { return i * len(c) / g, (i + 1) * len(c) / g }
		reduced := false
		for i := 0; i < g && !reduced; i++ {
			a, b := bounds(i)
			if stop() {
				return c
			}
			if test(c[a:b]) {
				c = append(c[:0:0], c[a:b]...)
				g, reduced = 2, true
			}
		}
		// With two chunks the complements are the chunks themselves.
		for i := 0; g > 2 && i < g && !reduced; i++ {
			a, b := bounds(i)
			scratch = append(append(scratch[:0], c[:a]...), c[b:]...)
			if stop() {
				return c
			}
			if test(scratch) {
				c = append(c[:0:0], scratch...)
				g, reduced = max(g-1, 2), true
			}
		}
		if !reduced {
			if g >= len(c) {
				break
			}
			g = min(2*g, len(c))
		}
	}
	return c
}
