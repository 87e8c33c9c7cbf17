package tracetool

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromiumPath finds Debian's chromium, or skips the test in one line.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): the browser check of the HTML timeline is skipped")
	return ""
}

// chromium runs headless Chromium on url with a fresh profile, no
// network and no sandbox (tests may run as root), and returns its
// standard output.
func chromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "chromium %v: %s", args, stderr.String())
	return out
}

// TestTimelineHTMLInChromium renders the page of each recorded run, and
// of a trace dense enough for density bands, in headless Chromium: what
// the page's script counts in the rendered page (lanes, frames as marks
// and in bands, markers) must be what the trace holds, counted without
// the timeline; hovering the first frame must show its details; zooming
// must zoom. It saves a screenshot of each. With KTSTR_TIMELINE_PNG set,
// the screenshot of corpus/real/hostile.zst zoomed to 3.05–3.48 s is
// written there (the picture in the README: docs/timeline-hostile.png).
func TestTimelineHTMLInChromium(t *testing.T) {
	bin := chromiumPath(t)
	type input struct {
		name string
		data []byte
	}
	var inputs []input
	for _, p := range realTraces(t) {
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		inputs = append(inputs, input{filepath.Base(p), data})
	}
	inputs = append(inputs, input{"dense-mix", hostileMix(t, 6000)})
	dir := t.TempDir()
	statusRE := regexp.MustCompile(`<p id="status"([^>]*)>`)
	attrRE := regexp.MustCompile(`data-([a-z]+)="([^"]*)"`)
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			f := factsOf(t, in.data)
			tl, _, page := timelineOf(t, in.data)
			path := filepath.Join(dir, in.name+".html")
			require.NoError(t, os.WriteFile(path, page, 0o644))
			dom := chromium(t, bin, "--dump-dom", "file://"+path+"#selftest")
			m := statusRE.FindSubmatch(dom)
			require.NotNil(t, m, "the rendered page has its status line")
			got := map[string]string{}
			for _, a := range attrRE.FindAllSubmatch(m[1], -1) {
				got[string(a[1])] = html.UnescapeString(string(a[2]))
			}
			require.Equal(t, "1", got["ready"], "the page's script ran to its end")
			markers := min(f.events, MaxMarkers)
			if f.end {
				markers++
			}
			assert.Equal(t, strconv.Itoa(len(f.lanes)), got["lanes"], "lanes in the page")
			assert.Equal(t, strconv.FormatInt(f.frames, 10), got["frames"], "frames in the page (marks and bands)")
			assert.Equal(t, strconv.Itoa(tl.MarkCount()), got["marks"])
			assert.Equal(t, strconv.Itoa(markers), got["markers"], "markers in the page")
			assert.Equal(t, "4", got["zoom"], "zoom in took")
			assert.NotEmpty(t, got["tip"], "hovering the first frame shows its details")
			if tl.MarkCount() > 0 {
				first := tl.Lanes[0].Marks[0]
				assert.Contains(t, got["tip"], fmt.Sprintf("#%d %s at", first.Index, first.Tag))
			} else {
				assert.Contains(t, got["tip"], "frames,")
			}

			png := filepath.Join(dir, in.name+".png")
			chromium(t, bin, "--window-size=1400,900", "--screenshot="+png, "file://"+path)
			b, err := os.ReadFile(png)
			require.NoError(t, err)
			assert.True(t, bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")), "a PNG")
			t.Logf("%s: %d lanes, %d frames, %d markers as the browser counts them; screenshot %s (%d bytes)", in.name, len(f.lanes), f.frames, markers, png, len(b))
		})
	}
	if out := os.Getenv("KTSTR_TIMELINE_PNG"); out != "" {
		data, err := os.ReadFile(filepath.Join("..", "corpus", "real", "hostile.zst"))
		require.NoError(t, err)
		tl, err := BuildTimeline(bytes.NewReader(data), "corpus/real/hostile.zst")
		require.NoError(t, err)
		var page bytes.Buffer
		require.NoError(t, tl.WriteHTML(&page))
		path := filepath.Join(dir, "readme.html")
		require.NoError(t, os.WriteFile(path, page.Bytes(), 0o644))
		abs, err := filepath.Abs(out)
		require.NoError(t, err)
		chromium(t, bin, "--window-size=1360,650", "--hide-scrollbars", "--screenshot="+abs, "file://"+path+"#3.05-3.48")
		t.Logf("wrote %s", abs)
	}
}
