package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	out := `fuzz: elapsed: 0s, gathering baseline coverage: 0/31 completed
fuzz: elapsed: 0s, gathering baseline coverage: 31/31 completed, now fuzzing with 1 workers
fuzz: elapsed: 3s, execs: 30000 (10000/sec), new interesting: 1 (total: 32)
fuzz: elapsed: 6s, execs: 60000 (10000/sec), new interesting: 1 (total: 32)
fuzz: elapsed: 1m3s, execs: 630000 (10000/sec), new interesting: 2 (total: 33)
PASS
ok  	github.com/ktstr/ktstr/fuzz	63.1s
`
	p, err := parse(strings.NewReader(out))
	require.NoError(t, err)
	assert.Equal(t, point{3 * time.Second, 30000}, p.first)
	assert.Equal(t, point{63 * time.Second, 630000}, p.last)
	assert.InDelta(t, 10000, p.rate(), 0.01)

	for name, bad := range map[string]string{
		"no progress":          "PASS\nok  \tx\t1s\n",
		"one line":             "fuzz: elapsed: 3s, execs: 3 (1/sec), new interesting: 0 (total: 1)\n",
		"no time between them": "fuzz: elapsed: 3s, execs: 3 (1/sec), x\nfuzz: elapsed: 3s, execs: 9 (1/sec), x\n",
		"bad duration":         "fuzz: elapsed: 3q, execs: 3 (1/sec), x\n",
	} {
		_, err := parse(strings.NewReader(bad))
		assert.Error(t, err, name)
	}
}
