package main

import (
	"fmt"
	"slices"
	"strings"
)

// syncDelta is after minus before, by controller, without the controllers
// that did not reconcile in between.
func syncDelta(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// reportReconciles prints cert-manager's reconciles per certificate by
// controller for each run and its scale run: the same certificates cost
// cert-manager more behind one issuer than behind another either because
// each reconcile costs more (it lists every object of the namespace) or
// because there are more of them, and this table tells which.
func reportReconciles(p func(string, ...any), results []result) {
	type row struct {
		run string
		result
	}
	var rows []row
	names := map[string]bool{}
	for _, r := range results {
		for i, x := range []*result{&r, r.scaled} {
			if x == nil || x.syncs == nil {
				continue
			}
			run := x.label
			if i == 1 {
				run += ", then the scale batch"
			}
			rows = append(rows, row{run, *x})
			for k := range x.syncs {
				names[k] = true
			}
		}
	}
	if len(rows) == 0 {
		return
	}
	controllers := make([]string, 0, len(names))
	for k := range names {
		controllers = append(controllers, k)
	}
	slices.Sort(controllers)
	p("")
	p("cert-manager's reconciles per certificate, by controller (certmanager_controller_sync_call_count during the run):")
	p("")
	p("| run | Certificates | %s | all |", strings.Join(controllers, " | "))
	p("|%s", strings.Repeat(" --- |", len(controllers)+3))
	for _, x := range rows {
		cells := make([]string, 0, len(controllers)+1)
		all := 0
		for _, k := range controllers {
			cells = append(cells, fmt.Sprintf("%.2f", float64(x.syncs[k])/float64(x.n)))
			all += x.syncs[k]
		}
		cells = append(cells, fmt.Sprintf("%.2f", float64(all)/float64(x.n)))
		p("| %s | %d | %s |", x.run, x.n, strings.Join(cells, " | "))
	}
}
