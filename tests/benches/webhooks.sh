#!/bin/sh
# The inbound webhook benchmark (BENCHMARKS.md): for each stratbox binary
# given (default: target/release/stratbox), start a host on a fresh store,
# load it with distinct TradingView alerts at about 2,000 requests a second
# three times, then once as fast as wrk goes. Needs wrk (Debian: apt-get
# install wrk). Binaries given together are measured in one session, so
# they can be compared.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || set -- "$here/../../target/release/stratbox"
for bin in "$@"; do
    dir=$(mktemp -d)
    cp "$here/hooks.toml" "$dir/"
    "$bin" run --config "$dir/hooks.toml" > /dev/null 2>&1 &
    host=$!
    sleep 1.5
    echo "== $bin"
    for run in 1 2 3 unpaced; do
        if [ "$run" = unpaced ]; then delay=0; else delay=2; fi
        DELAY_MS=$delay wrk -t 1 -c 5 -d 10s --latency -s "$here/tradingview.lua" http://127.0.0.1:18181 |
            awk -v run="$run" '/Requests\/sec/ {r = $2} /^ +50%/ {p50 = $2} /^ +90%/ {p90 = $2}
                /^ +99%/ {p99 = $2} /Non-2xx/ {e = $5} /Socket errors/ {s = $0}
                END {printf "%-8s %10s req/s  p50 %-9s p90 %-9s p99 %-9s non-2xx %s %s\n", run, r, p50, p90, p99, e + 0, s}'
    done
    printf 'wal bytes: %s\n' "$(stat -c %s "$dir/bench.db-wal" 2>/dev/null || echo 0)"
    kill "$host"
    wait "$host" 2>/dev/null || true
    rm -rf "$dir"
done
