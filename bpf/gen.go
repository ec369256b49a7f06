// Package bpf holds adoptwatch's kernel side: the CO-RE eBPF programs (C, in this
// directory) and the Go bindings bpf2go generates from them. The objects are
// committed so that building and testing need no clang; `make generate` rebuilds them.
package bpf

//go:generate go tool bpf2go -tags linux -go-package bpf -target amd64 -type adopt_record -type task_record -type adoptee_record -type adoptee_flag -type ancestor -type task_ident -type record_header -type counter -type record_kind -type adopt_hook -type reaper_flag -type lineage_flag -type exit_flag -type limit -type proc_key -type lineage -type seed -type settings -type watch_flag -type seed_state Adoptwatch adoptwatch.bpf.c -- -I/usr/include/x86_64-linux-gnu -O2 -g -Wall -Werror
