package certmanager

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// syncCallCount is cert-manager's counter of reconciles (sync calls), by the
// label "controller".
const syncCallCount = "certmanager_controller_sync_call_count"

// SyncCalls reads cert-manager's metrics at url (served through
// Options.MetricsListener) and returns how many times each controller has
// reconciled an object so far. A controller that has reconciled nothing is
// absent.
func SyncCalls(ctx context.Context, url string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("certmanager: GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("certmanager: parsing %s: %w", url, err)
	}
	out := map[string]int{}
	if f, ok := families[syncCallCount]; ok {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" {
					out[l.GetValue()] += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return out, nil
}
