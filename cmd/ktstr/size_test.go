package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"4096", 4096}, {"64KiB", 64 << 10}, {"512MiB", 512 << 20}, {"4GiB", 4 << 30},
		{"4G", 4 << 30}, {"1 MB", 1 << 20}, {"100B", 100}, {"1TiB", 1 << 40},
	} {
		var b byteSize
		require.NoError(t, b.Set(tc.in), tc.in)
		assert.EqualValues(t, tc.want, b, tc.in)
	}
	for _, in := range []string{"", "0", "-1", "MiB", "4 GiBs", "1.5GiB", "9999999999999GiB", "x"} {
		var b byteSize
		assert.Error(t, b.Set(in), in)
	}
	b := byteSize(4 << 30)
	assert.Equal(t, "4GiB", b.String())
	b = 1000
	assert.Equal(t, "1000", b.String())
}
