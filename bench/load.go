package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// throughput is the outcome of one load phase: successful operations per
// second and the latency of each.
type throughput struct {
	Ops    uint64
	PerSec float64
	P50    time.Duration
	P99    time.Duration
	Failed uint64
	Errors []string
}

func (t throughput) String() string {
	return fmt.Sprintf("%.0f/s (p50 %s, p99 %s)", t.PerSec, round(t.P50), round(t.P99))
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// signedTarget makes a vegeta target signed by signer as the triton CLI
// signs: (request-target) and date.
func signedTarget(t *vegeta.Target, signer *httpsig.Signer, method, url string, body []byte) error {
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := signer.Sign(req); err != nil {
		return err
	}
	t.Method, t.URL, t.Body, t.Header = method, url, body, req.Header
	return nil
}

// attack drives targets as fast as cfg.Concurrency workers can for
// cfg.Duration: every request waits for the answer to the previous one of
// its worker (a closed model), so the throughput is the server's.
func (b *bench) attack(name string, targets vegeta.Targeter, wantStatus int) throughput {
	c := uint64(b.cfg.Concurrency)
	a := vegeta.NewAttacker(
		vegeta.Workers(c), vegeta.MaxWorkers(c),
		vegeta.Connections(b.cfg.Concurrency), vegeta.MaxConnections(b.cfg.Concurrency),
		vegeta.KeepAlive(true), vegeta.Timeout(30*time.Second),
	)
	var m vegeta.Metrics
	var out throughput
	errs := map[string]bool{}
	for res := range a.Attack(targets, vegeta.ConstantPacer{}, b.cfg.Duration, name) {
		if int(res.Code) != wantStatus && res.Error == "" {
			res.Error = fmt.Sprintf("status %d, want %d: %.200s", res.Code, wantStatus, res.Body)
		}
		if res.Error != "" {
			out.Failed++
			if len(errs) < 5 {
				errs[res.Error] = true
			}
		}
		m.Add(res)
	}
	m.Close()
	for e := range errs {
		out.Errors = append(out.Errors, e)
	}
	sort.Strings(out.Errors)
	out.Ops = m.Requests - out.Failed
	out.PerSec = float64(out.Ops) / m.Duration.Seconds()
	out.P50, out.P99 = m.Latencies.P50, m.Latencies.P99
	return out
}

// do sends one request signed by signer and returns the status and body.
func do(ctx context.Context, signer *httpsig.Signer, method, url string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := signer.Sign(req); err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// mustDo is do, requiring status want.
func mustDo(ctx context.Context, signer *httpsig.Signer, method, url string, body any, want int) ([]byte, error) {
	status, data, err := do(ctx, signer, method, url, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d %.300s", method, url, status, data)
	}
	return data, nil
}
