#!/usr/bin/env bash
# Runs a command and prints, every 250 ms, the CPU time each of its threads used in that
# interval (in clock ticks of 10 ms: 25 means one thread was busy the whole interval). Shows
# how a benchmark spreads over cores, e.g.:
#
#   scripts/thread-cpu.sh target/release/networkio bench throughput --runs 1 --modes plaintext
#
# Linux only (reads /proc/<pid>/task/*/stat).
set -euo pipefail
if [ "$#" -eq 0 ]; then
    echo "usage: $0 command [args...]" >&2
    exit 2
fi
"$@" &
pid=$!
declare -A last
while kill -0 "$pid" 2>/dev/null; do
    line=""
    for task in /proc/"$pid"/task/*; do
        stat=$(cat "$task/stat" 2>/dev/null) || continue
        # Fields after the command name: utime and stime are the 12th and 13th.
        read -r -a fields <<< "${stat##*) }"
        now=$(( fields[11] + fields[12] ))
        busy=$(( now - ${last[$task]:-$now} ))
        last[$task]=$now
        if [ "$busy" -gt 0 ]; then
            line="$line ${task##*/}:$busy"
        fi
    done
    [ -n "$line" ] && echo "threads busy (ticks / 250 ms):$line" >&2
    sleep 0.25
done
wait "$pid"
