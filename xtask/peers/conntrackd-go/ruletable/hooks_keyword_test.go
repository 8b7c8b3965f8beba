// Hooks for v1.3.0 (keyword language): setup renames the original's
// NewFilter, Evaluate, NewParser and Compile to originalNewFilter,
// originalEvaluate, originalNewParser and originalCompile in its copy;
// these wrappers call them and record what the original's tests load and
// decide. Its parser and evaluator tests call NewParser, ParseRule and
// Compile and then the compiled predicate: the rule text is the last one
// given to NewParser, and only the outermost Compile's predicate records.
// Calls made inside NewFilter and Evaluate record nothing of their own.
// Part of the conntrackd project (not of the original).
package filter

import "github.com/ti-mo/conntrack"

var (
	ruleTableInFilter  int
	ruleTableDepth     int
	ruleTableLastParse string
)

func NewFilter(ruleStrings []string) (*Filter, error) {
	ruleTableInFilter++
	f, err := originalNewFilter(ruleStrings)
	ruleTableInFilter--
	r := ruleTableRecord{Kind: "load", Rules: append([]string{}, ruleStrings...)}
	if err != nil {
		r.Error = err.Error()
	}
	ruleTableRecordLine(r)
	return f, err
}

func (f *Filter) Evaluate(event conntrack.Event) (bool, bool, int) {
	ruleTableInFilter++
	matched, log, index := f.originalEvaluate(event)
	ruleTableInFilter--
	rules := []string{}
	if f != nil {
		for _, rule := range f.Rules {
			rules = append(rules, rule.RuleText)
		}
	}
	ruleTableRecordLine(ruleTableRecord{Kind: "evaluate", Rules: rules, Event: ruleTableEventOf(event), Verdict: &ruleTableVerdict{matched, log, index}})
	return matched, log, index
}

// NewParser records the rule as a load case: whether the original accepts
// it is asked of NewFilter by the comparison, like every other rule.
func NewParser(input string) (*Parser, error) {
	if ruleTableInFilter == 0 {
		ruleTableLastParse = input
		ruleTableRecordLine(ruleTableRecord{Kind: "parse", Rules: []string{input}})
	}
	return originalNewParser(input)
}

func Compile(expr ExprNode) (PredicateFunc, error) {
	ruleTableDepth++
	pred, err := originalCompile(expr)
	ruleTableDepth--
	if err != nil || ruleTableDepth > 0 || ruleTableInFilter > 0 {
		return pred, err
	}
	rule := ruleTableLastParse
	return func(event conntrack.Event) bool {
		matched := pred(event)
		if ruleTableInFilter == 0 {
			ruleTableRecordLine(ruleTableRecord{Kind: "predicate", Rules: []string{rule}, Event: ruleTableEventOf(event), Verdict: &ruleTableVerdict{Matched: matched, Index: -1}})
		}
		return matched
	}, nil
}
