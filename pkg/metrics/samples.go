package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Samples are the values of one scrape by series: the metric name alone, or the name and its
// labels sorted by name, as in `peerpatch_agent_received_bytes_total{source="peers"}`. A
// histogram contributes its _count, _sum and _bucket series, a summary its _count and _sum.
type Samples map[string]float64

// Series is the key of a series in Samples: name with labels given as name, value pairs.
func Series(name string, labels ...string) string {
	if len(labels)%2 != 0 {
		panic("metrics.Series: labels must be name, value pairs")
	}
	pairs := make([]string, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		pairs = append(pairs, fmt.Sprintf("%s=%q", labels[i], labels[i+1]))
	}
	if len(pairs) == 0 {
		return name
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// Get is the value of a series (see Series); 0 if the scrape does not have it.
func (s Samples) Get(name string, labels ...string) float64 { return s[Series(name, labels...)] }

// Has reports whether the scrape has the series.
func (s Samples) Has(name string, labels ...string) bool {
	_, ok := s[Series(name, labels...)]
	return ok
}

// Gather scrapes g (a registry) in-process.
func Gather(g prometheus.Gatherer) (Samples, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	s := Samples{}
	for _, mf := range mfs {
		s.add(mf)
	}
	return s, nil
}

// ParseText reads a scrape in the Prometheus text format, as GET /metrics answers it.
func ParseText(r io.Reader) (Samples, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	s := Samples{}
	for _, mf := range mfs {
		s.add(mf)
	}
	return s, nil
}

func (s Samples) add(mf *dto.MetricFamily) {
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName(), l.GetValue())
		}
		switch {
		case m.Counter != nil:
			s[Series(name, labels...)] = m.GetCounter().GetValue()
		case m.Gauge != nil:
			s[Series(name, labels...)] = m.GetGauge().GetValue()
		case m.Untyped != nil:
			s[Series(name, labels...)] = m.GetUntyped().GetValue()
		case m.Histogram != nil:
			h := m.GetHistogram()
			s[Series(name+"_count", labels...)] = float64(h.GetSampleCount())
			s[Series(name+"_sum", labels...)] = h.GetSampleSum()
			for _, b := range h.GetBucket() {
				le := fmt.Sprint(b.GetUpperBound())
				if math.IsInf(b.GetUpperBound(), 1) {
					le = "+Inf"
				}
				s[Series(name+"_bucket", append(labels, "le", le)...)] = float64(b.GetCumulativeCount())
			}
		case m.Summary != nil:
			s[Series(name+"_count", labels...)] = float64(m.GetSummary().GetSampleCount())
			s[Series(name+"_sum", labels...)] = m.GetSummary().GetSampleSum()
		}
	}
}
