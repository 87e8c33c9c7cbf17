package capture

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// ImportRaw writes to dst a trace of the raw guest→host byte stream read
// from src, as `ktstr trace import --raw` does: DATA records in direction
// TX on BulkPort, every one stamped at time 0, and no END record. With
// chunk > 0 each record carries chunk bytes (the last one what is left);
// with chunk == 0 the whole input is one delivery, which must then fit
// in MaxDataSize. An empty input gives a trace with no records. ImportRaw
// does not close dst.
func ImportRaw(dst io.Writer, src io.Reader, chunk int, meta Meta) error {
	if chunk < 0 || chunk > MaxDataSize {
		return fmt.Errorf("capture: chunk size %d out of range: want 0 (one delivery) to %d", chunk, MaxDataSize)
	}
	w, err := NewWriter(dst, meta)
	if err != nil {
		return err
	}
	defer w.Close()
	if chunk == 0 {
		err = importWhole(w, src)
	} else {
		err = importChunks(w, src, chunk)
	}
	if err != nil {
		return err
	}
	return w.Close()
}

// importWhole writes all of src as one delivery, reading it in pieces up
// to the bound.
func importWhole(w *Writer, src io.Reader) error {
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling, to one byte past the bound at most, so
			// an input over it is detected without reading it all.
			buf = slices.Grow(buf, min(max(len(buf), growStep), MaxDataSize+1-len(buf)))
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > MaxDataSize {
			return fmt.Errorf("capture: raw input is larger than %d bytes, the most one delivery can hold; pass --chunk N (for example --chunk 65536) to split it into deliveries", MaxDataSize)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("capture: reading raw input: %w", err)
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return w.WriteData(TX, BulkPort, 0, buf)
}

// importChunks writes src as deliveries of chunk bytes.
func importChunks(w *Writer, src io.Reader, chunk int) error {
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if werr := w.WriteData(TX, BulkPort, 0, buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		default:
			return fmt.Errorf("capture: reading raw input: %w", err)
		}
	}
}
