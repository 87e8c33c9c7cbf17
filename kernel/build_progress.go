package kernel

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// kbuildStepRE matches the one-line summaries kbuild prints for each
// step in its quiet mode ("  CC      kernel/sched/ext.o").
var kbuildStepRE = regexp.MustCompile(`^\s+[A-Z][A-Z0-9_-]*\s+\S`)

// stageLog receives the combined output of one build stage's commands.
// It keeps all of it in a log file, counts kbuild steps, and every
// interval writes one status line to the progress writer (every line
// when verbose). It keeps the last lines for a failure report.
type stageLog struct {
	stage    string
	log      io.Writer
	progress io.Writer
	verbose  bool
	every    time.Duration
	now      func() time.Time

	start, lastReport time.Time
	steps             int
	last              string
	partial           []byte
	tail              []string
}

const stageTailLines = 40

func newStageLog(stage string, log, progress io.Writer, verbose bool, now func() time.Time) *stageLog {
	t := now()
	return &stageLog{stage: stage, log: log, progress: progress, verbose: verbose,
		every: 15 * time.Second, now: now, start: t, lastReport: t}
}

// Write logs p and reports progress; it never fails because of the
// progress writer.
func (l *stageLog) Write(p []byte) (int, error) {
	if _, err := l.log.Write(p); err != nil {
		return 0, err
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *stageLog) line(s string) {
	s = strings.TrimRight(s, "\r")
	l.tail = append(l.tail, s)
	if len(l.tail) > stageTailLines {
		l.tail = l.tail[len(l.tail)-stageTailLines:]
	}
	if kbuildStepRE.MatchString(s) {
		l.steps++
		l.last = strings.Join(strings.Fields(s), " ")
	}
	if l.verbose {
		fmt.Fprintln(l.progress, s)
		return
	}
	if now := l.now(); now.Sub(l.lastReport) >= l.every {
		l.lastReport = now
		fmt.Fprintf(l.progress, "  %s: %d steps, %s: %s\n", l.stage, l.steps, l.elapsed().Round(time.Second), l.last)
	}
}

// elapsed is the time since the stage started.
func (l *stageLog) elapsed() time.Duration { return l.now().Sub(l.start) }

// done reports the end of the stage.
func (l *stageLog) done() {
	fmt.Fprintf(l.progress, "  %s: done, %d steps in %s\n", l.stage, l.steps, l.elapsed().Round(100*time.Millisecond))
}

// failure writes the last lines of output to the progress writer.
func (l *stageLog) failure(logPath string) {
	fmt.Fprintf(l.progress, "  %s failed; the last lines of %s:\n", l.stage, logPath)
	for _, s := range l.tail {
		fmt.Fprintf(l.progress, "    %s\n", s)
	}
	if len(l.partial) > 0 {
		fmt.Fprintf(l.progress, "    %s\n", l.partial)
	}
}
