package capture

// The harness of FuzzReader, with every helper it calls. The target also
// builds with go-118-fuzz-build (.clusterfuzzlite/build.sh), which
// compiles this file alone as part of the package, its testing import
// rewritten: so nothing here comes from another _test.go file, takes a
// testing.TB or uses an assertion library (docs/fuzzing.md, "What a
// target needs to build both ways"). The other tests use these helpers
// too.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// FuzzReader feeds arbitrary bytes to the Reader, raw and compressed:
// it must never panic, must classify every error, and whatever it reads
// from a clean trace must survive a write/read round trip.
func FuzzReader(f *testing.F) {
	// Under libFuzzer this whole function runs once per input and f.Add
	// does nothing (the seeds reach it as a seed corpus instead), so the
	// seeds are built only where they are used.
	if libfuzzer.Enabled() {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, testMeta())
		if err != nil {
			f.Fatal(err)
		}
		if err := writeRecords(w, sampleRecords(false)); err != nil {
			f.Fatal(err)
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		valid := buf.Bytes()
		f.Add(valid, false)
		f.Add(valid[:len(valid)/2], false)
		f.Add([]byte{}, false)
		f.Add([]byte("KTSTRTRC\x01\x00\x00\x00\x02\x00\x00\x00{}\x01\x0b\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"), true)
		f.Add([]byte("KTSTRTRC\x01\x00\x00\x00\x02\x00\x00\x00{}\x07\xff\xff\xff\xff"), true)
		f.Add([]byte("KTSTRTRC\x01\x00\x00\x00\x02\x00\x00\x00{}\x02\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff"), true)
	}
	// Made at the first compressIt input and kept for the rest (go test
	// calls the fuzz function in turn, never at once): a libFuzzer build
	// runs this whole function, this line included, once per input, and
	// so makes one only for the inputs that compress.
	var enc *zstd.Encoder
	export := libfuzzer.Exporter()
	f.Fuzz(func(t *testing.T, data []byte, compressIt bool) {
		if export != nil {
			export(t, data, compressIt)
		}
		if compressIt {
			// Let the fuzzer reach past the zstd layer.
			if enc == nil {
				var err error
				enc, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
				if err != nil {
					t.Fatal(err)
				}
			}
			data = enc.EncodeAll(data, nil)
		}
		meta, recs, err := readAll(data)
		// NextInto, into buffers that some bodies fit and some do not,
		// reads what Next reads and fails as Next fails.
		_, recsInto, errInto := readAllInto(data, []int{0, 20, 300, 5000}[len(data)%4])
		if !reflect.DeepEqual(recs, recsInto) || (err == nil) != (errInto == nil) || err != nil && err.Error() != errInto.Error() {
			t.Fatalf("NextInto read %d records (%v), Next %d (%v)", len(recsInto), errInto, len(recs), err)
		}
		// Decoding frames ahead on other goroutines reads what one
		// decoder reads and fails as it fails.
		_, recsAhead, errAhead := readAllDecoders(data, -1, 2)
		if !reflect.DeepEqual(recs, recsAhead) || (err == nil) != (errAhead == nil) || err != nil && err.Error() != errAhead.Error() {
			t.Fatalf("with 2 decoders read %d records (%v), with 1 %d (%v)", len(recsAhead), errAhead, len(recs), err)
		}
		if !errors.Is(err, io.EOF) {
			if n := sentinels(err); n != 1 {
				t.Fatalf("unclassified error (wraps %d sentinels): %v", n, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of more than one line: %q", err)
			}
			return
		}
		// A clean read round-trips.
		var out bytes.Buffer
		w, err := NewWriter(&out, meta)
		if err != nil {
			t.Fatalf("writing back the metadata read: %v", err)
		}
		if err := writeRecords(w, recs); err != nil {
			t.Fatalf("writing back the records read: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("closing the trace written back: %v", err)
		}
		meta2, recs2, err := readAll(out.Bytes())
		if !errors.Is(err, io.EOF) {
			t.Fatalf("reading the trace written back: %v", err)
		}
		// json.Marshal of a Meta is canonical (fields in order, map keys
		// sorted), so equal metadata marshal to equal bytes.
		m1, err := json.Marshal(meta)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := json.Marshal(meta2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m1, m2) {
			t.Fatalf("metadata read back differs:\n  read    %s\n  re-read %s", m1, m2)
		}
		if !reflect.DeepEqual(recs, recs2) {
			t.Fatalf("records read back differ: read %d, re-read %d:\n  %+v\n  %+v", len(recs), len(recs2), recs, recs2)
		}
	})
}

// testMeta is metadata with every field set.
func testMeta() Meta {
	return Meta{
		ToolVersion:   "ktstr 0.1.0-test",
		KernelPath:    "/cache/vmlinuz-6.12.9-cloud-amd64",
		KernelRelease: "6.12.9+deb13-cloud-amd64",
		KernelSHA256:  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Backend:       "qemu",
		Accel:         "tcg",
		CPUs:          2,
		MemoryMiB:     512,
		Scenario:      "cpu-spread",
		CommandLine:   []string{"ktstr", "record", "--scenario", "cpu-spread"},
		StartTime:     time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.UTC),
		Extra:         map[string]string{"host": "ci-7"},
	}
}

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// readAll reads every record of a trace, copying the slices so they
// outlive the next call, and returns them with the error that ended
// reading (io.EOF for a clean end).
func readAll(trace []byte) (Meta, []Record, error) { return readAllInto(trace, -1) }

// readAllInto is readAll with NextInto, each DATA body decoded into a
// fresh buffer of capacity bufCap when it fits (bufCap < 0: with Next);
// it checks the Reader's promise that a delivery so decoded lies in
// that buffer.
func readAllInto(trace []byte, bufCap int) (Meta, []Record, error) {
	return readAllDecoders(trace, bufCap, 1)
}

// readAllDecoders is readAllInto with a Reader of n decoders.
func readAllDecoders(trace []byte, bufCap, n int) (Meta, []Record, error) {
	r, err := NewReader(bytes.NewReader(trace), WithDecoders(n))
	if err != nil {
		return Meta{}, nil, err
	}
	defer r.Close()
	var recs []Record
	for {
		var rec Record
		var inBuf bool
		var buf []byte
		if bufCap < 0 {
			rec, err = r.Next()
		} else {
			buf = make([]byte, 0, bufCap)
			rec, inBuf, err = r.NextInto(buf)
		}
		if err != nil {
			return r.Meta(), recs, err
		}
		if inBuf && (rec.Kind != KindData || cap(rec.Data) == 0 || &rec.Data[:cap(rec.Data)][cap(rec.Data)-1] != &buf[:bufCap][bufCap-1]) {
			return r.Meta(), recs, errors.New("NextInto said the body is in the buffer, and it is not")
		}
		rec.Data = bytes.Clone(rec.Data)
		rec.Detail = bytes.Clone(rec.Detail)
		recs = append(recs, rec)
	}
}

// writeRecords writes recs (as read back by a Reader) with w.
func writeRecords(w *Writer, recs []Record) error {
	for _, rec := range recs {
		var err error
		switch rec.Kind {
		case KindData:
			err = w.WriteData(rec.Dir, rec.Port, rec.TimeNS, rec.Data)
		case KindEvent:
			err = w.WriteEvent(rec.TimeNS, rec.Name, rec.Detail)
		case KindEnd:
			err = w.WriteEnd(*rec.End)
		default:
			err = errors.New("unexpected kind " + rec.Kind.String())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sampleRecords returns one of each record kind, with empty and
// maximum-size deliveries when big is set.
func sampleRecords(big bool) []Record {
	recs := []Record{
		{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 1000, Data: []byte("SRDY frame bytes")},
		{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 1001, Data: []byte{}},
		{Kind: KindData, Dir: RX, Port: 0xFFFF, TimeNS: 2000, Data: randBytes(1, 4096)},
		{Kind: KindEvent, TimeNS: 3000, Name: "sys_rdy"},
		{Kind: KindEvent, TimeNS: 4000, Name: "snapshot", Detail: json.RawMessage(`{"request_id":7,"regs":{"rip":"0xffffffff81000000"}}`)},
		{Kind: KindData, Dir: TX, Port: 0, TimeNS: -5, Data: []byte{0}},
	}
	if big {
		recs = append(recs, Record{Kind: KindData, Dir: TX, Port: BulkPort, TimeNS: 5000, Data: randBytes(2, MaxDataSize)})
	}
	return append(recs, Record{Kind: KindEnd, TimeNS: 9000, End: &End{
		TimeNS: 9000, ExitStatus: 1, Reason: "sched_exit",
		Outcome: json.RawMessage(`{"killed":true,"kill_signals":1}`),
	}})
}

// sentinels counts the package's sentinel errors err wraps.
func sentinels(err error) int {
	n := 0
	for _, s := range []error{ErrCorrupt, ErrTruncated, ErrVersion} {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}
