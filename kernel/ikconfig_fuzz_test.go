package kernel

// The harness of FuzzEmbeddedConfig. The target also builds with
// go-118-fuzz-build (.clusterfuzzlite/build.sh), which compiles this file
// alone as part of the package: so nothing here comes from another
// _test.go file, takes a testing.TB or uses an assertion library
// (docs/fuzzing.md); its images come from internal/kerneltest.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	kt "github.com/ktstr/ktstr/internal/kerneltest"
	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// FuzzEmbeddedConfig feeds EmbeddedConfig bzImages whose compressed
// kernel is the fuzzer's bytes, seeded with small kernels in each
// compression Go can write: whatever they hold, it returns a config
// within its bound or a one-line error, and never panics.
func FuzzEmbeddedConfig(f *testing.F) {
	// Under libFuzzer f.Add does nothing and this function runs once per
	// input: the seeds are built only where they are used.
	if libfuzzer.Enabled() {
		v := []byte("\xe8\x10\x00\x00\x00code IKCFG_ST")
		v = append(v, kt.Gzip([]byte(kt.Config))...)
		v = append(v, "IKCFG_ED more code"...)
		for _, p := range [][]byte{kt.Gzip(v), kt.Zstd(v), kt.LZ4(v), kt.LZMA(v), kt.XZ(v), kt.Zstd(v[:20])} {
			f.Add(p)
		}
	}
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, payload []byte) {
		if export != nil {
			export(t, payload)
		}
		if err := checkEmbeddedConfig(EmbeddedConfig(context.Background(), kt.BzImage(payload))); err != nil {
			t.Fatal(err)
		}
	})
}

// checkEmbeddedConfig is FuzzEmbeddedConfig's oracle: an error is one
// line, and a config stays within maxConfig.
func checkEmbeddedConfig(config []byte, err error) error {
	if err != nil {
		if strings.Contains(err.Error(), "\n") {
			return fmt.Errorf("error on more than one line: %q", err)
		}
		return nil
	}
	if len(config) > maxConfig {
		return fmt.Errorf("config of %d bytes, over the %d-byte bound", len(config), maxConfig)
	}
	return nil
}
