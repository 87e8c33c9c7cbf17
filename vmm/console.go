package vmm

import (
	"bytes"
	"io"
	"os"
	"strings"

	"github.com/ktstr/ktstr/dispatch/wire"
)

// EndNoBulkPort is the end of a run whose agent found no bulk port: the
// kernel lacks the virtio console, or its modules were not loaded.
const EndNoBulkPort = "no_bulk_port"

// consoleTail is how much of the console log's end is read to explain a
// run that never reached SYS_RDY.
const consoleTail = 64 << 10

// consoleWhy reads the end of a console log and says why the guest never
// sent SYS_RDY: the agent's no-bulk-port line (then reason is
// EndNoBulkPort), the kernel's panic line, or the agent's last words.
// It returns "" for both when the log says nothing useful.
func consoleWhy(path string) (reason, why string) {
	if path == "" {
		return "", ""
	}
	f, err := os.Open(path)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > consoleTail {
		_, _ = f.Seek(st.Size()-consoleTail, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, consoleTail))
	var panicLine, agentLine string
	for _, l := range strings.Split(string(bytes.ReplaceAll(b, []byte("\r"), nil)), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.Contains(l, wire.NoBulkPortMarker):
			return EndNoBulkPort, l[strings.Index(l, wire.NoBulkPortMarker):]
		case strings.Contains(l, "Kernel panic") && panicLine == "":
			panicLine = l
		case strings.Contains(l, "ktstr-init:"):
			agentLine = l[strings.Index(l, "ktstr-init:"):]
		}
	}
	if panicLine != "" {
		return "", panicLine
	}
	return "", agentLine
}
