# The trace tools (package tracetool; docs/trace-tools.md).
#
#   make timeline-browser   the HTML timeline rendered in headless Chromium
#                           (Debian's chromium; the test skips in one line
#                           where it is absent; .ci/run installs it)
#   make timeline-png       refresh docs/timeline-hostile.png, the README's
#                           picture, from corpus/real/hostile.zst
#   make bench-tracetools   the minimizer on the hostile run, and the
#                           timeline of 256 MiB of TX (time, peak RSS, sizes)

.PHONY: timeline-browser timeline-png bench-tracetools

timeline-browser:
	$(GO) test -count=1 -run 'TestTimelineHTMLInChromium' -v ./tracetool

timeline-png:
	KTSTR_TIMELINE_PNG=$(CURDIR)/docs/timeline-hostile.png $(GO) test -count=1 -run 'TestTimelineHTMLInChromium' ./tracetool

bench-tracetools:
	$(GO) test -run '^$$' -bench 'MinimizeHostile' -benchtime=5x ./tracetool
	$(GO) test -run '^$$' -bench 'TraceTimeline256MiB' -benchtime=3x ./cmd/ktstr
