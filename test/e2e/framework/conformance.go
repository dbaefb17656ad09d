package framework

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// TestImage is one image of the conformance suite, as hack/conformance-images.sh lists it.
type TestImage struct {
	// Repository is the path under the registry, e.g. e2e-test-images/agnhost.
	Repository string
	// Tag is the suite's tag, e.g. 2.66.1.
	Tag string
	// File is the OCI image layout tar.
	File string
}

// ReadImageList reads images.txt of hack/conformance-images.sh: REPOSITORY TAG FILE per line.
func ReadImageList(file string) ([]TestImage, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []TestImage
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 || !filepath.IsAbs(fields[2]) {
			return nil, fmt.Errorf("%s:%d: %q is not REPOSITORY TAG /ABSOLUTE/FILE", file, n, sc.Text())
		}
		out = append(out, TestImage{Repository: fields[0], Tag: fields[1], File: fields[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no image", file)
	}
	return out, nil
}

type junitSuites struct {
	Suites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Cases []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name    string    `xml:"name,attr"`
	Failure *struct{} `xml:"failure"`
	Error   *struct{} `xml:"error"`
	Skipped *struct{} `xml:"skipped"`
}

// ConformanceSummary counts the [Conformance] tests of one run of the suite.
type ConformanceSummary struct {
	Version  string
	Nodes    int
	Duration time.Duration
	Passed   int
	Skipped  int
	// Failed names each failed test.
	Failed []string
	// Skips are the tests skipped by name (a regular expression each) and why.
	Skips map[string]string
	// Report is the folder of the run's report.
	Report string
}

// Total is the number of conformance tests the report names.
func (s ConformanceSummary) Total() int { return s.Passed + s.Skipped + len(s.Failed) }

// SummarizeJUnit counts the [Conformance] test cases of a JUnit report as the e2e framework
// writes it (--report-dir): a case with <failure> or <error> failed, one with <skipped> was
// skipped, any other passed. Cases without [Conformance] in their name (specs the focus left
// out) are not counted. A report with no conformance case is an error: the run did not happen.
func SummarizeJUnit(file string) (ConformanceSummary, error) {
	var s ConformanceSummary
	b, err := os.ReadFile(file)
	if err != nil {
		return s, err
	}
	var js junitSuites
	if err := xml.Unmarshal(b, &js); err != nil {
		// A report of a single suite has <testsuite> at its root.
		var one junitSuite
		if err2 := xml.Unmarshal(b, &one); err2 != nil {
			return s, fmt.Errorf("%s: %w", file, errors.Join(err, err2))
		}
		js.Suites = []junitSuite{one}
	}
	for _, su := range js.Suites {
		for _, c := range su.Cases {
			if !strings.Contains(c.Name, "[Conformance]") {
				continue
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				s.Failed = append(s.Failed, c.Name)
			case c.Skipped != nil:
				s.Skipped++
			default:
				s.Passed++
			}
		}
	}
	sort.Strings(s.Failed)
	if s.Total() == 0 {
		return s, fmt.Errorf("%s names no [Conformance] test", file)
	}
	return s, nil
}

// Markdown is the results section of docs/conformance.md for a run that ended at now.
func (s ConformanceSummary) Markdown(now time.Time) string {
	var w strings.Builder
	fmt.Fprintf(&w, "Run of %s: `make conformance`, %d ginkgo processes, 1 control plane + 2 workers on the bed.\n\n",
		now.UTC().Format("2006-01-02"), s.Nodes)
	w.WriteString("| Kubernetes | Conformance tests | Passed | Failed | Skipped | Duration |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(&w, "| %s | %d | %d | %d | %d | %s |\n", s.Version, s.Total(), s.Passed, len(s.Failed), s.Skipped, s.Duration.Round(time.Second))
	if len(s.Failed) > 0 {
		w.WriteString("\nFailed:\n\n")
		for _, f := range s.Failed {
			fmt.Fprintf(&w, "- `%s`\n", f)
		}
	}
	if len(s.Skips) > 0 {
		w.WriteString("\nSkipped by name:\n\n")
		keys := make([]string, 0, len(s.Skips))
		for k := range s.Skips {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&w, "- `%s`: %s\n", k, s.Skips[k])
		}
	}
	fmt.Fprintf(&w, "\nReport: `$BASALT_CACHE/conformance/%s/%s/` (junit_01.xml, e2e.log) on the machine that ran it.\n",
		s.Version, filepath.Base(s.Report))
	return w.String()
}

// The results section of docs/conformance.md lies between these markers.
const (
	conformanceBegin = "<!-- conformance-results:begin -->"
	conformanceEnd   = "<!-- conformance-results:end -->"
)

// WriteConformanceResults replaces the results section of the page at path with md.
func WriteConformanceResults(path, md string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, conformanceBegin), strings.Index(s, conformanceEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s ... %s section", path, conformanceBegin, conformanceEnd)
	}
	s = s[:i+len(conformanceBegin)] + "\n" + md + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
