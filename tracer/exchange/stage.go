package exchange

import (
	"github.com/hoptrace/hoptrace/tracer/journey"
	"github.com/hoptrace/hoptrace/tracer/render"
)

// Options say what a Stage does besides linking retransmissions.
type Options struct {
	Config
	// Exchanges, when set, gets every completed exchange (requests are
	// paired with responses only then). Its error stops the run as a
	// sink's does.
	Exchanges func(*Exchange) error
	// Retransmits, when set, gets every journey that retransmits an
	// earlier one, with the link, before the sink after the stage sees it.
	Retransmits func(j *journey.Journey, r *Retransmit)
}

// Stage is a pipeline sink in front of another: it links each journey to
// the one it retransmits and pairs exchanges, then hands the journey on.
type Stage struct {
	next    render.Printer
	opt     Options
	linker  *Linker
	tracker *Tracker
	links   map[uint64]Retransmit // of the journey being handed on
}

// NewStage returns a stage handing journeys to next (a printer, the
// latency aggregator, any pipeline.Sink).
func NewStage(next render.Printer, opt Options) *Stage {
	s := &Stage{next: next, opt: opt, linker: NewLinker(opt.Config), links: map[uint64]Retransmit{}}
	if opt.Exchanges != nil {
		s.tracker = NewTracker(opt.Config, opt.Exchanges)
	}
	return s
}

// Journey links and pairs j, then hands it to the next sink.
func (s *Stage) Journey(j *journey.Journey) error {
	var sg seg
	if classify(j, &sg) {
		r, ok := s.linker.link(&sg)
		var rp *Retransmit
		if ok {
			rp = &r
			s.links[j.ID] = r
			defer delete(s.links, j.ID)
			if s.opt.Retransmits != nil {
				s.opt.Retransmits(j, rp)
			}
		}
		if s.tracker != nil {
			s.tracker.add(&sg, rp)
			if err := s.tracker.Err(); err != nil {
				return err
			}
		}
	}
	return s.next.Journey(j)
}

// RetransmitOf is the link of the journey the stage is handing on now
// (sinks after it may ask while they take it).
func (s *Stage) RetransmitOf(j *journey.Journey) (Retransmit, bool) {
	r, ok := s.links[j.ID]
	return r, ok
}

// Summary lets go the exchanges still waiting, then hands the summary on.
func (s *Stage) Summary(sum render.Summary) error {
	var err error
	if s.tracker != nil {
		s.tracker.Flush()
		err = s.tracker.Err()
	}
	if nerr := s.next.Summary(sum); err == nil {
		err = nerr
	}
	return err
}
