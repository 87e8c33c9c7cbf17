package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ModulesDir is where the host packs the kernel modules a modular
// kernel needs for the bulk port, named NN-NAME.ko so that their sorted
// order is the order they load in (dependencies first).
const ModulesDir = "/lib/ktstr/modules"

// loadModules loads every module in dir, in name order, with
// finit_module(2), and says on the console what it loaded and how long
// it took. A module already loaded (EEXIST) is fine; any other failure
// is reported and loading goes on, so the console names every module
// that failed.
func loadModules(console io.Writer, dir string) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) || len(ents) == 0 {
		return
	}
	if err != nil {
		fmt.Fprintf(console, "ktstr-init: modules: %v\n", err)
		return
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ko") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	start := time.Now()
	var loaded []string
	for _, n := range names {
		mod := strings.TrimSuffix(n, ".ko")
		if _, m, ok := strings.Cut(mod, "-"); ok {
			mod = m
		}
		if err := finitModule(filepath.Join(dir, n)); err != nil {
			fmt.Fprintf(console, "ktstr-init: load module %s: %v\n", mod, err)
			continue
		}
		loaded = append(loaded, mod)
	}
	fmt.Fprintf(console, "ktstr-init: loaded %d modules in %d ms: %s\n", len(loaded), time.Since(start).Milliseconds(), strings.Join(loaded, " "))
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
