#!/usr/bin/env bash
# usage: profile.sh AW BENCH OUTDIR MODE(text|json) SECONDS
set -u
AW=$1 BENCH=$2 OUT=$3 MODE=$4 SECS=${5:-20}
mkdir -p "$OUT"
args=()
[ "$MODE" = json ] && args+=(--json)
rm -f "$OUT/ready-$MODE"
sysctl -q kernel.bpf_stats_enabled=1
taskset -c 0 "$AW" "${args[@]}" $( [ -z "${NOPROF:-}" ] && echo --cpuprofile "$OUT/cpu-$MODE.pprof") --ready-file "$OUT/ready-$MODE" >/dev/null 2>"$OUT/aw-$MODE.err" &
awpid=$!
for i in $(seq 100); do [ -e "$OUT/ready-$MODE" ] && break; sleep 0.1; done
cpu() { awk '{print $14+$15}' /proc/$awpid/stat; }
csw() { cat /proc/$awpid/task/*/status | awk '/^voluntary_ctxt_switches/ {s+=$2} END {printf "%d\n", s}'; }
sched() { cat /proc/$awpid/task/*/schedstat | awk '{s+=$1} END {printf "%d\n", s}'; }
bpftool prog show -j > "$OUT/bpf0-$MODE.json"; grep -h "^prog_id:" /proc/$awpid/fdinfo/* 2>/dev/null | awk '{print $2}' > "$OUT/ids-$MODE"
c0=$(cpu); s0=$(sched); w0=$(csw)
res=$(echo go | "$BENCH" __workload double ${SECS}s 1 0)
c1=$(cpu); s1=$(sched); w1=$(csw)
echo "context switches per adoption: $(( (w1-w0) * 100 / $(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cycles"])') ))/100"
bpftool prog show -j > "$OUT/bpf1-$MODE.json"
kill -TERM $awpid; wait $awpid
sysctl -q kernel.bpf_stats_enabled=0
echo "$res" > "$OUT/workload-$MODE.json"
cycles=$(echo "$res" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cycles"])')
python3 - "$OUT" "$MODE" "$cycles" "$c0" "$c1" "$s0" "$s1" "$res" "$awpid" <<'PY'
import json,sys
out,mode,cycles,c0,c1,s0,s1,res=sys.argv[1:9]
cycles=int(cycles); r=json.loads(res)
ids={int(x) for x in open(f"{out}/ids-{mode}").read().split()}
b0={p['id']:p for p in json.load(open(f"{out}/bpf0-{mode}.json"))}
b1=json.load(open(f"{out}/bpf1-{mode}.json"))
print(f"mode={mode} cycles={cycles} rate={cycles/r['seconds']:.0f}/s")
print(f"adoptwatch CPU: stat utime+stime {(int(c1)-int(c0))*10e6/cycles/1e3:.1f} us/adoption; schedstat {(int(s1)-int(s0))/cycles/1e3:.1f} us/adoption")
for p in b1:
    if 'run_cnt' not in p: continue
    if p['id'] not in ids: continue
    o=b0.get(p['id'],{})
    n=p['run_cnt']-o.get('run_cnt',0); t=p['run_time_ns']-o.get('run_time_ns',0)
    if n>0: print(f"  prog {p.get('name','?'):24s} runs {n:9d} ns/run {t/n:7.0f} total {t/1e6:8.1f} ms  per adoption {t/cycles/1e3:.2f} us")
PY
