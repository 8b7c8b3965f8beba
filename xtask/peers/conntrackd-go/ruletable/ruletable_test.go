// Rule table of the Go original: compiled into a copy of the original's
// internal/filter package (next to its own tests) by `cargo xtask setup`,
// never into the daemon built from the release. Two modes, chosen by the
// environment:
//
//   - CONNTRACKD_RULETABLE_RECORD=FILE while the original's own tests run:
//     the hooks (hooks_cel_test.go or hooks_keyword_test.go) write one JSON
//     line per rule list the tests load and per event they evaluate, with
//     what the original decided;
//   - CONNTRACKD_RULETABLE_CASES=FILE and CONNTRACKD_RULETABLE_VERDICTS=FILE
//     with -test.run '^TestRuleTableOracle$': each case line ({"rules": [...],
//     "events": [...]}) is loaded with NewFilter and every event evaluated;
//     one verdict line per case. A list whose NewFilter does not return
//     within ruleTableLoadLimit is answered {"timeout": true} and the run
//     ends with exit status 3 (the load is still running and cannot be
//     stopped): the caller goes on with the next case.
//
// Events are written and read in the stream sink's JSON fields (type, prot,
// src_addr, dst_addr, src_port, dst_port, flow), which `conntrackd filter`
// reads. Part of the conntrackd project (not of the original).
package filter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
)

// ruleTableEvent is an event in the stream sink's field names.
type ruleTableEvent struct {
	Type    string `json:"type"`
	Flow    uint32 `json:"flow"`
	Prot    string `json:"prot"`
	SrcAddr string `json:"src_addr"`
	DstAddr string `json:"dst_addr"`
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
	// TCP state in the stream sink's spelling; the original's rules never read it.
	TCPState string `json:"tcp_state,omitempty"`
}

// ruleTableVerdict is Evaluate's result.
type ruleTableVerdict struct {
	Matched bool `json:"matched"`
	Log     bool `json:"log"`
	Index   int  `json:"index"`
}

// ruleTableRecord is one observation while the original's tests run.
type ruleTableRecord struct {
	Test  string          `json:"test"`
	Kind  string          `json:"kind"` // "load", "evaluate" or "predicate"
	Rules []string        `json:"rules"`
	Event *ruleTableEvent `json:"event,omitempty"`
	// For "load": the error text, empty when the rules loaded.
	Error string `json:"error"`
	// For "evaluate": Evaluate's result; for "predicate": Matched only.
	Verdict *ruleTableVerdict `json:"verdict,omitempty"`
}

var ruleTableOut *os.File

func init() {
	path := os.Getenv("CONNTRACKD_RULETABLE_RECORD")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		panic(fmt.Sprintf("ruletable: %v", err))
	}
	ruleTableOut = f
}

// ruleTableRecordLine writes r when recording, naming the test that is running.
func ruleTableRecordLine(r ruleTableRecord) {
	if ruleTableOut == nil {
		return
	}
	r.Test = ruleTableTestName()
	line, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("ruletable: %v", err))
	}
	if _, err := ruleTableOut.Write(append(line, '\n')); err != nil {
		panic(fmt.Sprintf("ruletable: %v", err))
	}
}

// ruleTableTestName is the Test function on the stack (filter.TestX or filter.TestX.func1).
func ruleTableTestName() string {
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		frame, more := frames.Next()
		name := frame.Function[strings.LastIndex(frame.Function, "/")+1:]
		if rest, ok := strings.CutPrefix(name, "filter.Test"); ok {
			return "Test" + strings.SplitN(rest, ".", 2)[0]
		}
		if !more {
			return "?"
		}
	}
}

// ruleTableEventOf writes a conntrack event in the stream sink's fields.
func ruleTableEventOf(ev conntrack.Event) *ruleTableEvent {
	out := &ruleTableEvent{}
	switch ev.Type {
	case conntrack.EventNew:
		out.Type = "NEW"
	case conntrack.EventUpdate:
		out.Type = "UPDATE"
	case conntrack.EventDestroy:
		out.Type = "DESTROY"
	}
	if ev.Flow == nil {
		return out
	}
	tuple := ev.Flow.TupleOrig
	switch tuple.Proto.Protocol {
	case syscall.IPPROTO_TCP:
		out.Prot = "TCP"
	case syscall.IPPROTO_UDP:
		out.Prot = "UDP"
	default:
		out.Prot = fmt.Sprint(tuple.Proto.Protocol)
	}
	out.SrcAddr, out.DstAddr = tuple.IP.SourceAddress.String(), tuple.IP.DestinationAddress.String()
	out.SrcPort, out.DstPort = tuple.Proto.SourcePort, tuple.Proto.DestinationPort
	out.Flow = ev.Flow.ID
	return out
}

// ruleTableEventFrom builds the conntrack event an event line stands for.
func ruleTableEventFrom(e ruleTableEvent) (conntrack.Event, error) {
	var proto uint8
	switch e.Prot {
	case "TCP":
		proto = syscall.IPPROTO_TCP
	case "UDP":
		proto = syscall.IPPROTO_UDP
	default:
		return conntrack.Event{}, fmt.Errorf("prot %q", e.Prot)
	}
	src, err := netip.ParseAddr(e.SrcAddr)
	if err != nil {
		return conntrack.Event{}, err
	}
	dst, err := netip.ParseAddr(e.DstAddr)
	if err != nil {
		return conntrack.Event{}, err
	}
	flow := conntrack.NewFlow(proto, conntrack.StatusAssured, src, dst, e.SrcPort, e.DstPort, 60, 0)
	flow.ID = e.Flow
	ev := conntrack.Event{Flow: &flow}
	switch e.Type {
	case "NEW":
		ev.Type = conntrack.EventNew
	case "UPDATE":
		ev.Type = conntrack.EventUpdate
	case "DESTROY":
		ev.Type = conntrack.EventDestroy
	case "":
	default:
		return conntrack.Event{}, fmt.Errorf("type %q", e.Type)
	}
	return ev, nil
}

type ruleTableCase struct {
	Rules  []string         `json:"rules"`
	Events []ruleTableEvent `json:"events"`
}

// ruleTableLoadLimit bounds one NewFilter: rules load in microseconds, but
// v1.3.0 never finishes a port range ending at 65535 (its uint16 loop
// variable wraps around) and grows its port list until memory runs out.
const ruleTableLoadLimit = 3 * time.Second

type ruleTableAnswer struct {
	Timeout  bool               `json:"timeout,omitempty"`
	Error    string             `json:"error"`
	Verdicts []ruleTableVerdict `json:"verdicts"`
}

// TestRuleTableOracle answers case lines with the original's verdicts.
func TestRuleTableOracle(t *testing.T) {
	in, out := os.Getenv("CONNTRACKD_RULETABLE_CASES"), os.Getenv("CONNTRACKD_RULETABLE_VERDICTS")
	if in == "" || out == "" {
		t.Fatal("set CONNTRACKD_RULETABLE_CASES and CONNTRACKD_RULETABLE_VERDICTS")
	}
	cases, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer cases.Close()
	verdicts, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(verdicts)
	scanner := bufio.NewScanner(cases)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	for n := 1; scanner.Scan(); n++ {
		var c ruleTableCase
		if err := json.Unmarshal(scanner.Bytes(), &c); err != nil {
			t.Fatalf("%s line %d: %v", in, n, err)
		}
		answer := ruleTableAnswer{Verdicts: []ruleTableVerdict{}}
		type loaded struct {
			f   *Filter
			err error
		}
		done := make(chan loaded, 1)
		go func() {
			f, err := NewFilter(c.Rules)
			done <- loaded{f, err}
		}()
		var f *Filter
		select {
		case l := <-done:
			f, err = l.f, l.err
		case <-time.After(ruleTableLoadLimit):
			answer.Timeout = true
			answer.Error = fmt.Sprintf("NewFilter did not return within %v", ruleTableLoadLimit)
			line, _ := json.Marshal(answer)
			w.Write(append(line, '\n'))
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			verdicts.Close()
			os.Exit(3)
		}
		if err != nil {
			answer.Error = err.Error()
		} else {
			for _, e := range c.Events {
				ev, err := ruleTableEventFrom(e)
				if err != nil {
					t.Fatalf("%s line %d: %v", in, n, err)
				}
				matched, log, index := f.Evaluate(ev)
				answer.Verdicts = append(answer.Verdicts, ruleTableVerdict{matched, log, index})
			}
		}
		line, err := json.Marshal(answer)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(append(line, '\n'))
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := verdicts.Close(); err != nil {
		t.Fatal(err)
	}
}
