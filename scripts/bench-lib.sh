# Shell helpers of the benchmark scripts (bench-compare, bench-ab); sourced, not run.
# The callers set WORK (a scratch directory), BENCH (nexus-bench), DURATION, WARMUP, CONNS.

# A port below the ephemeral range that nothing answers on (bash's /dev/tcp, no extra tools).
free_port() {
  local p
  while true; do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
}

wait_http() {
  for _ in $(seq 1 100); do
    if curl -fs "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$(basename "$0"): $1 never answered" >&2
  exit 1
}

# The load generator's own CPU (user + system seconds) goes to $WORK/cpu: with everything on
# 2 cores, "generator CPU per request" shows whether the generator is what limits a run.
TIMEFORMAT='%U %S'
# wrk -> "requests/s p50_us p99_us - - cpu_us_per_request requests"
wrk_run() {
  { time wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1" >"$WORK/wrk.out"; } 2>"$WORK/cpu"
  awk -v cpu="$(awk '{print $1 + $2}' "$WORK/cpu")" '
    function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
    /requests in/ {n = $1} /Requests\/sec/ {r = $2} $1 == "50%" {p50 = us($2)} $1 == "99%" {p99 = us($2)}
    END {printf "%s %s %s - - %.2f %d\n", r, p50, p99, cpu * 1e6 / n, n}' "$WORK/wrk.out"
}
# nexus-bench -> "ops/s p50_us p99_us hit_rate errors cpu_us_per_request requests"
bench_run() {
  { time "$BENCH" -duration "${DURATION}s" -warmup "${WARMUP}s" -concurrency "$CONNS" -json "$@" \
      >"$WORK/bench.json"; } 2>"$WORK/cpu"
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); l=j["latency"]; print(j["throughput"], l["p50_us"], l["p99_us"], j["hit_rate"], j["measured"]["errors"], "%.2f" % (float(sys.argv[2]) * 1e6 / j["sent"]), j["sent"])' \
    "$WORK/bench.json" "$(awk '{print $1 + $2}' "$WORK/cpu")"
}
# CPU ticks (user + system, 1/100 s) used so far by the given PIDs.
cpu_ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{t += $1} END {print t + 0}'; }

# Every run of a row, one line each: add ROW "fields".
declare -A RUNS
add() { RUNS[$1]+="$2"$'\n'; }
# The run whose first field is the median of the rounds (all fields of that run).
median_run() { printf '%s' "${RUNS[$1]}" | sed '/^$/d' | sort -n -k1,1 | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
field() { echo "$1" | awk -v f="$2" '{print $f}'; }
fmt_int() {  # 23432.4 -> 23,432 (no locale needed)
  awk -v v="$1" 'BEGIN { s = sprintf("%.0f", v); out = ""; n = length(s)
    for (i = 1; i <= n; i++) { out = out substr(s, i, 1); if ((n - i) % 3 == 0 && i < n) out = out "," }
    print out }'
}
fmt_us() { awk -v v="$1" 'BEGIN { if (v == "") print "-"; else if (v < 1000) printf "%.0f µs", v; else printf "%.2f ms", v / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

