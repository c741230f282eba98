package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// histTotals are a histogram's count and sum of seconds.
type histTotals struct{ count, sum float64 }

// createTotals reads, from keysd's /metrics, the totals of the histograms
// that split a CreateKey: the whole request, and the event appends in it.
func createTotals(ctx context.Context, url string) (request, appends histTotals, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return request, appends, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return request, appends, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return request, appends, fmt.Errorf("GET /metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return request, appends, fmt.Errorf("GET /metrics: %w", err)
	}
	request = histogram(families["keysd_http_request_duration_seconds"], map[string]string{"method": "POST", "route": "/:login/keys"})
	appends = histogram(families["keysd_event_append_duration_seconds"], map[string]string{"result": "ok"})
	return request, appends, nil
}

// histogram sums the histograms of f whose labels include labels.
func histogram(f *dto.MetricFamily, labels map[string]string) histTotals {
	var t histTotals
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		t.count += float64(m.GetHistogram().GetSampleCount())
		t.sum += m.GetHistogram().GetSampleSum()
	}
	return t
}

// createSplit says where a CreateKey's time goes, as means over the write
// load (after minus before): the event append (publish with the expected
// sequence, acknowledged after the fsync) against the whole request.
func createSplit(reqBefore, appBefore, reqAfter, appAfter histTotals) string {
	requests, appends := reqAfter.count-reqBefore.count, appAfter.count-appBefore.count
	if requests <= 0 || appends <= 0 {
		return "no requests measured"
	}
	perRequest := time.Duration((reqAfter.sum - reqBefore.sum) / requests * float64(time.Second))
	perAppend := time.Duration((appAfter.sum - appBefore.sum) / appends * float64(time.Second))
	appendShare := time.Duration(float64(perAppend) * appends / requests)
	return fmt.Sprintf("request %s: event append (publish, fsync) %s (%.2f per request, %s each), the rest %s",
		round(perRequest), round(appendShare), appends/requests, round(perAppend), round(perRequest-appendShare))
}
