package loader

import "testing"

// TestLastCopies: the programs whose recursion misses make UnseenEvents are,
// for each number of copies, the last copy attached of fork, exec and exit,
// and on_free, so that no miss is read from a program not loaded.
func TestLastCopies(t *testing.T) {
	for copies := 1; copies <= maxCopies; copies++ {
		tracepoints := map[string]bool{}
		for _, name := range lastCopies[copies-1] {
			var found *tracepointProgram
			for i, p := range lineagePrograms {
				if p.name == name {
					found = &lineagePrograms[i]
				}
			}
			switch {
			case found == nil:
				t.Errorf("%d copies: %s is no lineage program", copies, name)
			case found.tracepoint == "sched_process_free" && found.copy != 0,
				found.tracepoint != "sched_process_free" && found.copy != copies-1:
				t.Errorf("%d copies: %s is copy %d, not the last attached", copies, name, found.copy)
			default:
				tracepoints[found.tracepoint] = true
			}
		}
		if len(tracepoints) != 4 {
			t.Errorf("%d copies: misses read on %v, want fork, exec, exit and free", copies, tracepoints)
		}
	}
}
