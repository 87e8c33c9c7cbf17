package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// kernelBuild runs `ktstr kernel build ARGS` and returns its exit status,
// stdout and stderr.
func kernelBuild(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := report(&stderr, runKernelBuild(args, &stdout, &stderr))
	return code, stdout.String(), stderr.String()
}

func TestKernelBuildUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", []string{"-h"}, ExitOK, "usage: ktstr kernel build"},
		{"no --sched-ext", nil, ExitUsage, "run 'ktstr kernel build --sched-ext'"},
		{"argument", []string{"--sched-ext", "extra"}, ExitUsage, `unexpected argument "extra"`},
		{"jobs", []string{"--sched-ext", "--jobs", "0"}, ExitUsage, "want at least 1"},
		{"no schedulers", []string{"--sched-ext", "--schedulers", " , "}, ExitUsage, "names no scheduler"},
		{"bad scheduler", []string{"--sched-ext", "--schedulers", "../x", "--cache", "/nonexistent"}, ExitUsage, `scheduler "../x"`},
		{"bad llvm", []string{"--sched-ext", "--llvm", "x", "--cache", "/nonexistent"}, ExitUsage, `LLVM version "x"`},
		{"unknown flag", []string{"--sched-ext", "--bogus"}, ExitUsage, "bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := kernelBuild(tc.args...)
			assert.Equal(t, tc.code, code, stderr)
			assert.Contains(t, stderr, tc.stderr)
			assert.Empty(t, stdout)
			if code != ExitOK {
				assert.Equal(t, 1, bytes.Count([]byte(stderr), []byte("\n")), "one-line error: %q", stderr)
			}
		})
	}
}

// An empty cache holds no build: --cached-only is an environment error
// that names the command that builds it.
func TestKernelBuildCachedOnlyEmptyCache(t *testing.T) {
	code, stdout, stderr := kernelBuild("--sched-ext", "--cached-only", "--no-install", "--cache", t.TempDir())
	assert.Equal(t, ExitEnv, code, stderr)
	assert.Contains(t, stderr, "ktstr kernel build --sched-ext")
	assert.Empty(t, stdout)
}
