package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ktstr/ktstr/internal/libfuzzer"
)

// cmdCheck runs every libFuzzer binary once over its seed corpus
// (-runs=0: the corpus only, no mutation) with libfuzzer.ExportEnv set, so
// that each input the target's function is called with is written back
// in the same encoding. The files written must be the seed corpus
// exactly: then go-118-fuzz-build's decoder, the real one, turned every
// seed into the values go test ran, and libFuzzer cut none short.
func cmdCheck(args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var c common
	c.register(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	targets, err := c.targets()
	if err != nil {
		return err
	}
	failed := 0
	for _, t := range targets {
		bin, err := c.binary(t)
		if err != nil {
			return err
		}
		seedFiles, err := readZip(filepath.Join(c.dir, t.SeedZip()))
		if err != nil {
			return err
		}
		work := filepath.Join(c.dir, "check", t.Name)
		echoed, log, err := echo(bin, seedFiles, work)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", t.Name, err, tail(log, 30))
		}
		if d := compareSets(seedFiles, echoed); d != "" {
			fmt.Printf("lfuzz check: %-24s FAILED: of %d seeds, %s\n", t.Name, len(seedFiles), d)
			failed++
			continue
		}
		fmt.Printf("lfuzz check: %-24s %3d of %d seeds reach the target as the values go test ran\n", t.Name, len(echoed), len(seedFiles))
	}
	if failed > 0 {
		return fmt.Errorf("%d target(s) do not get their seeds as go test does: libfuzzer.Encode and go-118-fuzz-build's decoder disagree", failed)
	}
	return positiveControl(&c, targets[0])
}

// positiveControl shows that the check tells an input apart from the
// values it decodes to: one seed of t with a byte appended decodes to
// the same values (the decoder ignores what is left over), so the target
// writes it back without the byte, under the seed's own name, and the
// comparison must report the appended copy as not coming back.
func positiveControl(c *common, t Target) error {
	bin, err := c.binary(t)
	if err != nil {
		return err
	}
	seedFiles, err := readZip(filepath.Join(c.dir, t.SeedZip()))
	if err != nil {
		return err
	}
	names := sortedKeys(seedFiles)
	if len(names) == 0 {
		return fmt.Errorf("%s has no seeds", t.Name)
	}
	padded := append(slices.Clone(seedFiles[names[0]]), 0xa5)
	variant := map[string][]byte{rawID(padded): padded}
	echoed, log, err := echo(bin, variant, filepath.Join(c.dir, "check", "positive-control"))
	if err != nil {
		return fmt.Errorf("positive control: %w\n%s", err, tail(log, 30))
	}
	if compareSets(variant, echoed) == "" || compareSets(map[string][]byte{names[0]: nil}, echoed) != "" {
		return fmt.Errorf("positive control: seed %s of %s with a byte appended came back as %v, want it reported, and back as the seed itself", names[0], t.Name, sortedKeys(echoed))
	}
	fmt.Printf("lfuzz check: positive control: a seed of %s with a byte appended comes back as the seed and is reported\n", t.Name)
	return nil
}

// echo runs bin once over files with libfuzzer.ExportEnv set and returns
// what the target's function wrote back, and the binary's output.
func echo(bin string, files map[string][]byte, work string) (map[string][]byte, []byte, error) {
	if err := os.RemoveAll(work); err != nil {
		return nil, nil, err
	}
	in, back := filepath.Join(work, "in"), filepath.Join(work, "echo")
	if err := writeDir(in, files); err != nil {
		return nil, nil, err
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(abs, "-runs=0", "in")
	cmd.Dir = work
	cmd.Env = append(withoutEnv(os.Environ(), libfuzzer.ExportEnv), libfuzzer.ExportEnv+"="+back)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		return nil, log.Bytes(), fmt.Errorf("running %s over its seed corpus: %v (a seed crashes it?)", bin, err)
	}
	got, err := readDir(filepath.Join(back, "libFuzzer"))
	if err != nil && !os.IsNotExist(err) {
		return nil, log.Bytes(), err
	}
	return got, log.Bytes(), nil
}

// compareSets returns "" when got holds exactly the names of want, else
// what differs.
func compareSets(want, got map[string][]byte) string {
	var missing, extra []string
	for n := range want {
		if _, ok := got[n]; !ok {
			missing = append(missing, n)
		}
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			extra = append(extra, n)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return fmt.Sprintf("%d did not reach the target as encoded (%s) and %d other inputs did (%s)",
		len(missing), short(missing), len(extra), short(extra))
}

// short lists up to three names.
func short(names []string) string {
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + ", …"
	}
	return strings.Join(names, ", ")
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
