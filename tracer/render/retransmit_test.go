package render_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hoptrace/hoptrace/tracer/journey"
	jt "github.com/hoptrace/hoptrace/tracer/journey/journeytest"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// TestRetransmitNote: a journey linked to the one it retransmits says so
// at the end of its text line, and in JSON as retransmit_of and
// retransmit_after_ns; others say nothing of it.
func TestRetransmitNote(t *testing.T) {
	js, _ := jt.Run(journey.Config{HostNetnsIno: jt.HostNS}, jt.Shapes())
	j := js[0]
	j.Retransmit = &journey.Retransmit{Of: 12, After: 1020 * time.Millisecond, OfVerdict: journey.VerdictDropped,
		OfDropWhere: "veth82f1", OfDropReason: "NETFILTER_DROP"}
	var text, js1 bytes.Buffer
	if err := render.NewText(&text, render.Options{}).Journey(j); err != nil {
		t.Fatal(err)
	}
	if want := "  retransmit of #12 after 1.02s (#12 DROPPED at veth82f1: NETFILTER_DROP)\n"; !strings.HasSuffix(text.String(), want) {
		t.Errorf("text %q, want it to end %q", text.String(), want)
	}
	p := render.NewJSON(&js1, render.Options{})
	if err := p.Journey(j); err != nil {
		t.Fatal(err)
	}
	var o render.JourneyJSON
	if err := json.Unmarshal(js1.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	if o.RetransmitOf == nil || *o.RetransmitOf != 12 || o.RetransmitAfterNS == nil || *o.RetransmitAfterNS != int64(1020*time.Millisecond) {
		t.Errorf("JSON retransmit_of %v after %v", o.RetransmitOf, o.RetransmitAfterNS)
	}
	sameLines(t, render.Options{}, j)

	j.Retransmit = &journey.Retransmit{Of: 7, After: 200 * time.Millisecond, OfVerdict: journey.VerdictContainer}
	text.Reset()
	if err := render.NewText(&text, render.Options{}).Journey(j); err != nil {
		t.Fatal(err)
	}
	if want := "  retransmit of #7 after 200ms (#7 delivered)\n"; !strings.HasSuffix(text.String(), want) {
		t.Errorf("text %q, want it to end %q", text.String(), want)
	}

	j.Retransmit = nil
	text.Reset()
	js1.Reset()
	_ = render.NewText(&text, render.Options{}).Journey(j)
	_ = render.NewJSON(&js1, render.Options{}).Journey(j)
	if strings.Contains(text.String(), "retransmit") || strings.Contains(js1.String(), "retransmit") {
		t.Errorf("a journey that is no retransmission mentions one:\n%s%s", text.String(), js1.String())
	}
}
