package main

import "runtime/debug"

// toolVersion returns the module version ktstr was built from, for trace
// metadata.
func toolVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return "ktstr " + bi.Main.Version
	}
	return "ktstr (devel)"
}
