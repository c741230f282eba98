package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// report collects the rows of the result table.
type report struct {
	rows   []row
	errs   []error
	failed []string
}

type row struct {
	what, result, target, met string
}

// ratio records a throughput against its baseline.
func (r *report) ratio(what string, got, base throughput, target float64) {
	q := 0.0
	if base.PerSec > 0 {
		q = got.PerSec / base.PerSec
	}
	r.rows = append(r.rows, row{what, fmt.Sprintf("%.2f: %s vs %s", q, got, base), fmt.Sprintf(">= %.1f", target), yes(q >= target)})
	r.failures(what, got)
	r.failures(what+" (baseline)", base)
}

func (r *report) failures(what string, t throughput) {
	if t.Failed > 0 {
		r.failed = append(r.failed, fmt.Sprintf("%s: %d failed requests: %s", what, t.Failed, strings.Join(t.Errors, "; ")))
	}
}

// check records a measurement against its target.
func (r *report) check(what, result, target string, met bool) {
	r.rows = append(r.rows, row{what, result, target, yes(met)})
}

// value records a measurement without a target.
func (r *report) value(what, result, target, met string) {
	r.rows = append(r.rows, row{what, result, target, met})
}

func (r *report) fail(phase string, err error) {
	r.errs = append(r.errs, fmt.Errorf("%s: %w", phase, err))
	r.rows = append(r.rows, row{phase, "failed: " + err.Error(), "", "no"})
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func (r *report) print(w io.Writer) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\nkeysd benchmarks, %s, %s, %d CPUs (%s), %s, load average %s\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), host, runtime.Version(), loadAverage())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\tresult\ttarget\tmet")
	for _, row := range r.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", row.what, row.result, row.target, row.met)
	}
	tw.Flush()
	for _, f := range r.failed {
		fmt.Fprintln(w, "failed requests:", f)
	}
}

func (r *report) err() error {
	if len(r.failed) > 0 {
		r.errs = append(r.errs, errors.New("some requests failed (see above)"))
	}
	return errors.Join(r.errs...)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAverage says how busy the machine was (other work skews results).
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
