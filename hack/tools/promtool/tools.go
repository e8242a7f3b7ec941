//go:build tools

// Package tools pins promtool (github.com/prometheus/prometheus/cmd/promtool)
// for hack/promtool.sh, which builds bin/promtool for `promtool check rules`
// and `promtool test rules` on the chart's PrometheusRule (test/monitoring).
// It is a scratch module, separate from the operator's own go.mod.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
