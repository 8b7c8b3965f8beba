// Hooks for v1.4.1 (CEL): setup renames the original's NewFilter and
// Evaluate to originalNewFilter and originalEvaluate in its copy; these
// wrappers call them and record what the original's tests load and decide.
// Part of the conntrackd project (not of the original).
package filter

import "github.com/ti-mo/conntrack"

func NewFilter(ruleStrings []string) (*Filter, error) {
	f, err := originalNewFilter(ruleStrings)
	r := ruleTableRecord{Kind: "load", Rules: append([]string{}, ruleStrings...)}
	if err != nil {
		r.Error = err.Error()
	}
	ruleTableRecordLine(r)
	return f, err
}

func (f *Filter) Evaluate(event conntrack.Event) (bool, bool, int) {
	matched, log, index := f.originalEvaluate(event)
	rules := []string{}
	if f != nil {
		for _, rule := range f.rules {
			rules = append(rules, rule.ruleText)
		}
	}
	ruleTableRecordLine(ruleTableRecord{Kind: "evaluate", Rules: rules, Event: ruleTableEventOf(event), Verdict: &ruleTableVerdict{matched, log, index}})
	return matched, log, index
}
