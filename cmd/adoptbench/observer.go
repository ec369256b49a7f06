package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/adoptwatch/adoptwatch/events"
	"github.com/adoptwatch/adoptwatch/internal/bench"
	"github.com/adoptwatch/adoptwatch/loader"
)

// segment is what an observer process reports for one workload run.
type segment struct {
	Events    uint64 `json:"events"`    // records / messages consumed
	Adoptions int    `json:"adoptions"` // adoptions into the workload's pid
	Dupes     int    `json:"dupes"`     // adoptions reported more than once
	Lost      uint64 `json:"lost"`      // kernel's lost-adoption counter, this segment
	Dropped   uint64 `json:"dropped"`   // proc connector: ENOBUFS overruns
	P50       int64  `json:"p50_ns,omitempty"`
	P99       int64  `json:"p99_ns,omitempty"`
	Max       int64  `json:"max_ns,omitempty"`
	CPUNanos  int64  `json:"cpu_ns"`
}

// memReport is what an adoptwatch observer reports for the memory test.
type memReport struct {
	RSSKiB      int64                 `json:"rss_kib"`
	Maps        []loader.MapMemory    `json:"maps"`
	Entries     int                   `json:"entries"`
	LineageFull uint64                `json:"lineage_full"`
	Programs    []loader.ProgramStats `json:"programs"`
}

// adoptionSink collects what a segment needs from adoption records.
type adoptionSink struct {
	mu     sync.Mutex
	target uint32
	seen   map[[2]uint64]int
	lat    []time.Duration
	events uint64
	total  uint64 // records since the start, never reset
}

func (s *adoptionSink) reset(target int) {
	s.mu.Lock()
	s.target, s.seen, s.lat, s.events = uint32(target), map[[2]uint64]int{}, nil, 0
	s.mu.Unlock()
}

func (s *adoptionSink) add(a *events.Adoption, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events++
	s.total++
	if a == nil || a.NewParent.PID != s.target {
		return
	}
	s.seen[[2]uint64{uint64(a.Child.PID), uint64(a.Child.Start)}]++
	s.lat = append(s.lat, now.Sub(a.Time))
}

func (s *adoptionSink) fill(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg.Events = s.events
	seg.Adoptions = len(s.seen)
	for _, n := range s.seen {
		if n > 1 {
			seg.Dupes += n - 1
		}
	}
	l := bench.SummarizeLatencies(s.lat)
	seg.P50, seg.P99, seg.Max = int64(l.P50), int64(l.P99), int64(l.Max)
}

// runObserver is an observer process: "none", "aw-all", "aw-pids PID[,PID]",
// "cnproc". It speaks a line protocol on stdin/stdout (see the package doc).
func runObserver(mode string, args []string) error {
	sink := &adoptionSink{}
	sink.reset(0)
	var obs *loader.Observer
	var cn *cnProc
	switch mode {
	case "none":
	case "aw-all", "aw-pids":
		if err := loader.CheckPrerequisites(); err != nil {
			return err
		}
		opts := loader.Options{}
		if mode == "aw-pids" {
			for _, a := range strings.Split(args[0], ",") {
				pid, err := strconv.Atoi(a)
				if err != nil {
					return err
				}
				opts.WatchPIDs = append(opts.WatchPIDs, pid)
			}
		}
		// An optional last argument sizes the lineage map.
		if i := map[string]int{"aw-all": 0, "aw-pids": 1}[mode]; len(args) > i {
			n, err := strconv.Atoi(args[i])
			if err != nil {
				return err
			}
			opts.MaxProcesses = uint32(n)
		}
		var err error
		if obs, err = loader.Open(opts); err != nil {
			return err
		}
		defer obs.Close()
		go func() {
			for {
				rec, err := obs.Read()
				if errors.Is(err, loader.ErrClosed) {
					return
				}
				if err == nil {
					sink.add(rec.Adoption, time.Now())
				}
			}
		}()
	case "cnproc":
		var err error
		if cn, err = openCnProc(); err != nil {
			return err
		}
		defer cn.Close()
		go cn.run()
	default:
		return fmt.Errorf("unknown observer %q", mode)
	}

	out := json.NewEncoder(os.Stdout)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	var cpu0 int64
	var counters0 loader.Counters
	var cnEvents0, cnDrops0 uint64
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "begin":
			target, _ := strconv.Atoi(f[1])
			sink.reset(target)
			if obs != nil {
				counters0, _ = obs.Counters()
			}
			if cn != nil {
				cnEvents0, cnDrops0 = cn.counts()
			}
			cpu0 = rusageCPU(unix.RUSAGE_SELF)
			fmt.Println("ok")
		case "end":
			var seg segment
			if obs != nil {
				// Let records already in the ring buffer arrive.
				settle(func() uint64 { c, _ := obs.Counters(); return c.Adoptions - c.UnwatchedAdoptions - c.LostAdoptions },
					func() uint64 { sink.mu.Lock(); defer sink.mu.Unlock(); return sink.total })
				c, _ := obs.Counters()
				seg.Lost = c.LostAdoptions - counters0.LostAdoptions
			}
			sink.fill(&seg)
			if cn != nil {
				e, d := cn.counts()
				seg.Events, seg.Dropped = e-cnEvents0, d-cnDrops0
			}
			seg.CPUNanos = rusageCPU(unix.RUSAGE_SELF) - cpu0
			out.Encode(seg)
		case "mem":
			var m memReport
			m.RSSKiB = rssKiB(os.Getpid())
			if obs != nil {
				m.Maps, _ = obs.MapMemory()
				m.Entries, _ = obs.LineageEntries()
				c, _ := obs.Counters()
				m.LineageFull = c.LineageFull
				m.Programs, _ = obs.ProgramStats()
			}
			out.Encode(m)
		}
	}
	return nil
}

// settle waits (at most 2 s) until the reader has consumed as many adoption
// records as the kernel sent.
func settle(sent, got func() uint64) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && got() < sent() {
		time.Sleep(5 * time.Millisecond)
	}
}

// rssKiB reads VmRSS of a process.
func rssKiB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
