package apply

import (
	"bufio"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// hostMounts reads /proc/self/mountinfo and unmounts with umount2(MNT_DETACH).
type hostMounts struct{}

func (hostMounts) Below(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mountsBelow(bufio.NewScanner(f), dir)
}

func (hostMounts) Unmount(target string) error { return unix.Unmount(target, unix.MNT_DETACH) }

// mountsBelow returns the mount points of a mountinfo listing at or below dir, deepest first.
func mountsBelow(sc *bufio.Scanner, dir string) ([]string, error) {
	dir = strings.TrimSuffix(dir, "/")
	var out []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.Count(out[i], "/") > strings.Count(out[j], "/") })
	// The same point may be mounted twice (stacked); keep each once, deepest first.
	seen := map[string]bool{}
	uniq := out[:0]
	for _, m := range out {
		if !seen[m] {
			seen[m] = true
			uniq = append(uniq, m)
		}
	}
	return uniq, nil
}

// unescapeMountinfo decodes the octal escapes (\040 for a space, ...) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
