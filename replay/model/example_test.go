package model_test

import (
	"encoding/json"
	"fmt"

	"github.com/ktstr/ktstr/dispatch/wire"
	"github.com/ktstr/ktstr/replay/model"
)

// Two deliveries: an SCPP at time 100 and an SCRR at time 250, then a
// torn SCDX whose crc does not match.
func ExampleEvaluate() {
	var s []byte
	s = wire.AppendFrame(s, wire.WatchdogPause, nil)
	second := int64(len(s))
	s = wire.AppendFrame(s, wire.WatchdogResume, nil)
	s = wire.AppendHeader(s, wire.Header{Tag: wire.SchedExit, Len: 1, CRC: 1})
	s = append(s, 'x')

	r := model.Evaluate(s, []int64{0, second}, []int64{100, 250})
	for _, f := range r.Frames {
		fmt.Printf("offset %d time %d tag %s verdict %q\n", f.Offset, f.Time, wire.Tag(f.Tag), f.Verdict)
	}
	b, err := json.Marshal(r.Outcome)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))
	// Output:
	// offset 0 time 100 tag SCPP verdict ""
	// offset 16 time 250 tag SCRR verdict ""
	// offset 32 time 250 tag SCDX verdict "crc"
	// {"killed":false,"kill_signals":0,"sys_rdy":false,"snapshot_requests":[],"kernel_ops":[],"kaslr":null,"step":0,"watchdog_pauses":1,"watchdog_pause_ns":150,"verdicts":[],"verdicts_dropped":0,"verdicts_dropped_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","rejected":{"crc":1,"pad":0,"unknown_tag":0,"forged_tag":0,"shape":0,"oneshot_repeat":0,"overflow":0,"out_of_order":0,"oversize":0,"resync_bytes":0,"truncated_tail_bytes":0}}
}
