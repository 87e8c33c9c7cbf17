package corpus

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// goFuzzHeader is the first line of a Go fuzz corpus file.
const goFuzzHeader = "go test fuzz v1"

// ErrGoFuzzFile reports a file that is not a one-value []byte Go fuzz
// corpus file.
var ErrGoFuzzFile = errors.New("not a go test fuzz v1 file holding one []byte")

// MarshalGoFuzzFile returns the content of a Go fuzz corpus file (the
// "go test fuzz v1" format `go test` reads from testdata/fuzz/NAME/)
// holding the single []byte argument data.
func MarshalGoFuzzFile(data []byte) []byte {
	b := make([]byte, 0, len(goFuzzHeader)+len(data)*2+16)
	b = append(b, goFuzzHeader+"\n[]byte("...)
	b = strconv.AppendQuote(b, string(data))
	return append(b, ")\n"...)
}

// UnmarshalGoFuzzFile returns the []byte argument of a Go fuzz corpus
// file holding exactly one []byte value, as MarshalGoFuzzFile writes and
// `go test` writes for a one-argument target.
func UnmarshalGoFuzzFile(content []byte) ([]byte, error) {
	lines := bytes.Split(bytes.TrimRight(content, "\r\n"), []byte("\n"))
	if len(lines) != 2 || string(bytes.TrimSuffix(lines[0], []byte("\r"))) != goFuzzHeader {
		return nil, fmt.Errorf("%w: want the line %q and one value line", ErrGoFuzzFile, goFuzzHeader)
	}
	v := bytes.TrimSpace(lines[1])
	q, ok := bytes.CutPrefix(v, []byte("[]byte("))
	if ok {
		q, ok = bytes.CutSuffix(q, []byte(")"))
	}
	if !ok {
		return nil, fmt.Errorf("%w: the value line is not []byte(...)", ErrGoFuzzFile)
	}
	s, err := strconv.Unquote(string(q))
	if err != nil {
		return nil, fmt.Errorf("%w: the []byte literal does not unquote: %w", ErrGoFuzzFile, err)
	}
	return []byte(s), nil
}

// GoFuzzFileName returns the name `go test` gives a corpus file with
// this content: the first 16 hex digits of its SHA-256.
func GoFuzzFileName(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:8])
}

// WriteGoFuzzFile writes data as a Go fuzz corpus file into dir (created
// if missing), named by its content hash, and returns its path. Writing
// the same data twice gives the same file.
func WriteGoFuzzFile(dir string, data []byte) (string, error) {
	content := MarshalGoFuzzFile(data)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating the corpus directory: %w", err)
	}
	path := filepath.Join(dir, GoFuzzFileName(content))
	tmp, err := os.CreateTemp(dir, ".tmp-corpus-*")
	if err != nil {
		return "", fmt.Errorf("writing a corpus file in %s: %w", dir, err)
	}
	_, err = tmp.Write(content)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing corpus file %s: %w", path, err)
	}
	return path, nil
}
