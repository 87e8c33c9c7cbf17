package kernel

import (
	"fmt"
	"regexp"
	"strings"
)

// configSetting is one option of a Kconfig fragment. Value is the text
// after "=" ("y", "m", a number, a quoted string), or "n" for a
// "# CONFIG_X is not set" line.
type configSetting struct {
	Name  string // with the CONFIG_ prefix
	Value string
}

// String renders the setting as a .config line.
func (s configSetting) String() string {
	if s.Value == "n" {
		return "# " + s.Name + " is not set"
	}
	return s.Name + "=" + s.Value
}

var (
	configSetRE   = regexp.MustCompile(`^(CONFIG_[A-Za-z0-9_]+)=(.+)$`)
	configUnsetRE = regexp.MustCompile(`^# (CONFIG_[A-Za-z0-9_]+) is not set$`)
)

// parseConfigLine parses one .config or fragment line. It reports
// ok=false for blank lines and comments that set nothing.
func parseConfigLine(line string) (s configSetting, ok bool) {
	line = strings.TrimSpace(line)
	if m := configSetRE.FindStringSubmatch(line); m != nil {
		return configSetting{Name: m[1], Value: m[2]}, true
	}
	if m := configUnsetRE.FindStringSubmatch(line); m != nil {
		return configSetting{Name: m[1], Value: "n"}, true
	}
	return configSetting{}, false
}

// parseFragment reads a Kconfig fragment: CONFIG_NAME=value lines,
// "# CONFIG_NAME is not set" lines, blank lines and # comments. Any other
// line, or a second setting of the same option, is an error.
func parseFragment(text string) ([]configSetting, error) {
	var out []configSetting
	seen := make(map[string]int)
	for i, line := range strings.Split(text, "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		s, ok := parseConfigLine(t)
		if !ok {
			if strings.HasPrefix(t, "#") {
				continue
			}
			return nil, fmt.Errorf("config fragment line %d: %q is neither CONFIG_NAME=value, \"# CONFIG_NAME is not set\" nor a comment", i+1, t)
		}
		if prev, dup := seen[s.Name]; dup {
			return nil, fmt.Errorf("config fragment line %d: %s is already set on line %d", i+1, s.Name, prev)
		}
		seen[s.Name] = i + 1
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("config fragment sets no option")
	}
	return out, nil
}

// mergeConfig returns config (the text of a .config) with every option
// of frag set as frag says: lines that set or unset those options are
// dropped and frag's lines appended, for `make olddefconfig` to resolve.
func mergeConfig(config string, frag []configSetting) string {
	names := make(map[string]bool, len(frag))
	for _, s := range frag {
		names[s.Name] = true
	}
	var b strings.Builder
	for _, line := range strings.SplitAfter(config, "\n") {
		if line == "" {
			continue
		}
		if s, ok := parseConfigLine(line); ok && names[s.Name] {
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteByte('\n')
		}
	}
	b.WriteString("# ktstr sched_ext fragment\n")
	for _, s := range frag {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// droppedSettings lists the settings of frag that config (a resolved
// .config) does not have, each as "CONFIG_X=y (got: ...)". Kconfig drops
// an option silently when a dependency is missing; this makes it loud.
func droppedSettings(config string, frag []configSetting) []string {
	have := make(map[string]string)
	for _, line := range strings.Split(config, "\n") {
		if s, ok := parseConfigLine(line); ok {
			have[s.Name] = s.Value
		}
	}
	var out []string
	for _, s := range frag {
		got, ok := have[s.Name]
		switch {
		case s.Value == "n" && (!ok || got == "n"):
			continue
		case ok && got == s.Value:
			continue
		}
		shown := "absent"
		if ok {
			shown = configSetting{Name: s.Name, Value: got}.String()
		}
		out = append(out, fmt.Sprintf("%s (got: %s)", s, shown))
	}
	return out
}
