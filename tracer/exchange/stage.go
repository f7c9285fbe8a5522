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
	// earlier one, with the link, before the sink after the stage sees it
	// (which finds the link in the journey's Retransmit too). j is valid
	// only during the call: the pipeline may reuse its memory after.
	Retransmits func(j *journey.Journey, r *Retransmit)
}

// Stage is a pipeline sink in front of another: it links each journey to
// the one it retransmits (setting its Retransmit) and pairs exchanges,
// then hands the journey on.
type Stage struct {
	next    render.Printer
	opt     Options
	linker  *Linker
	tracker *Tracker
}

// NewStage returns a stage handing journeys to next (a printer, the
// latency aggregator, any pipeline.Sink).
func NewStage(next render.Printer, opt Options) *Stage {
	s := &Stage{next: next, opt: opt, linker: NewLinker(opt.Config)}
	if opt.Exchanges != nil {
		s.tracker = NewTracker(opt.Config, opt.Exchanges)
	}
	return s
}

// Journey links and pairs j, then hands it to the next sink.
func (s *Stage) Journey(j *journey.Journey) error {
	var sg seg
	if classify(j, &sg) {
		var rp *Retransmit
		if r, ok := s.linker.link(&sg); ok {
			rc := r // allocated for a retransmission only
			rp = &rc
			j.Retransmit = &rc.Retransmit
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

// KeepsJourneys is the next sink's answer (pipeline.JourneyKeeper): the
// stage itself keeps only values taken from a journey (IDs, times, names),
// never the journey.
func (s *Stage) KeepsJourneys() bool {
	k, ok := s.next.(interface{ KeepsJourneys() bool })
	return !ok || k.KeepsJourneys()
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
