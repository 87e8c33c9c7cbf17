//go:build !libfuzzer

package libfuzzer

import "os"

// Enabled reports whether targets should add their f.Add seeds: not when
// NoSeedsEnv is 1. (In a libFuzzer build, enabled_libfuzzer.go, never.)
func Enabled() bool { return os.Getenv(NoSeedsEnv) != "1" }
