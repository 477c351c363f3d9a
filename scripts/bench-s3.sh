#!/usr/bin/env bash
# S3 part of make bench (BENCH_PARTS contains s3): snapshot the bench data
# into an S3 repository on Versity Gateway over loopback and into a local
# repository, side by side, and print the times and the ratio of S3
# throughput to local throughput (goal >= 0.5).
#
# Called by scripts/bench.sh with B (bench dir), bin (snapcrypt) and data
# (the generated data) in the environment; runs alone too, after bench.sh
# made the data once. Needs root to drop the page cache (skipped otherwise).
# BENCH_S3_RUNS (default 3) sets how many runs the best figure is taken of.
set -euo pipefail
cd "$(dirname "$0")/.."
B="${B:-${BENCH_DIR:-/var/tmp/snapcrypt-bench}}"
bin="${bin:-$PWD/bin/snapcrypt}"
data="${data:-$B/data}"
[ -f "$data/big.bin" ] || { echo "bench-s3: no bench data in $data (run scripts/bench.sh first)" >&2; exit 1; }
[ -x "$bin" ] || go build -o "$bin" ./cmd/snapcrypt

if ! command -v versitygw >/dev/null; then
  echo "bench-s3: installing versitygw" >&2
  GOBIN=/usr/local/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi

gw="$B/s3-gw"            # versitygw's posix root; bucket "bench" below it
local_repo="$B/s3-local-repo" # recreated for each run
key="$B/s3.key"
rm -rf "$gw" "$local_repo"
mkdir -p "$gw"

export AWS_ACCESS_KEY_ID="bench$RANDOM" AWS_SECRET_ACCESS_KEY="secret$RANDOM$RANDOM$RANDOM" AWS_REGION=us-east-1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)))
ROOT_ACCESS_KEY="$AWS_ACCESS_KEY_ID" ROOT_SECRET_KEY="$AWS_SECRET_ACCESS_KEY" \
  versitygw --port "127.0.0.1:$port" --quiet posix "$gw" >"$B/s3-gw.log" 2>&1 &
gwpid=$!
trap 'kill "$gwpid" 2>/dev/null || true; wait "$gwpid" 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  curl -s -o /dev/null "http://127.0.0.1:$port/" && break
  kill -0 "$gwpid" 2>/dev/null || { echo "bench-s3: versitygw exited:" >&2; cat "$B/s3-gw.log" >&2; exit 1; }
  sleep 0.05
done
# CreateBucket, signed by curl; versitygw wants the (empty) payload's hash.
curl -sSf -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  "http://127.0.0.1:$port/bench" >/dev/null
s3_url="s3:http://127.0.0.1:$port/bench"
"$bin" keygen "$key" >/dev/null 2>&1 || true

drop() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
# cpu PID: user+system CPU seconds the process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
declare -A T M U C
# measure NAME CMD...: wall seconds, peak RSS (KiB) and CPU seconds of CMD,
# and the CPU seconds versitygw used meanwhile; keeps the run with the
# shortest wall time under NAME.
measure() {
  local name=$1; shift
  local before wall rss ucpu gcpu
  before=$(cpu "$gwpid")
  /usr/bin/time -o "$B/s3-$name.time" -f '%e %M %U %S' "$@" >/dev/null 2>"$B/s3-$name.err" ||
    { echo "bench-s3: $name failed:" >&2; cat "$B/s3-$name.err" >&2; exit 1; }
  read -r wall rss ucpu scpu < <(tail -1 "$B/s3-$name.time")
  gcpu=$(awk -v a="$before" -v b="$(cpu "$gwpid")" 'BEGIN { printf "%.1f", b - a }')
  if [ -z "${T[$name]:-}" ] || awk -v a="$wall" -v b="${T[$name]}" 'BEGIN { exit !(a < b) }'; then
    T[$name]=$wall M[$name]=$rss C[$name]=$gcpu
    U[$name]=$(awk -v u="$ucpu" -v s="$scpu" 'BEGIN { printf "%.1f", u + s }')
  fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mibs() { awk -v bytes="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", bytes / 1048576 / s; else print "-" }'; }
row() { printf '| %-40s | %10s | %10s | %10s | %8s |\n' "$@"; }

# Each run snapshots into a fresh local repository and a fresh S3 prefix,
# alternating, from a cold page cache; the best of the runs counts (the
# machine may be busy with other work).
runs="${BENCH_S3_RUNS:-3}"
size=$(du -sb "$data" | cut -f1)
for i in $(seq "$runs"); do
  rm -rf "$local_repo"
  "$bin" init -r "$local_repo" -k "file:$key" >/dev/null
  "$bin" init -r "$s3_url/run$i" -k "file:$key" >/dev/null
  drop; measure local1 "$bin" snapshot -r "$local_repo" -k "file:$key" "$data"
  drop; measure s31 "$bin" snapshot -r "$s3_url/run$i" -k "file:$key" "$data"
done
drop; measure local2 "$bin" snapshot -r "$local_repo" -k "file:$key" "$data"
drop; measure s32 "$bin" snapshot -r "$s3_url/run$runs" -k "file:$key" "$data"
stored=$(du -sb "$gw/bench/run$runs" | cut -f1)

echo "## snapshot into S3 (Versity Gateway on loopback, posix backend on the same disk; best of $runs)"
row "figure" "local" "S3" "S3/local" "goal"
row "---" "---" "---" "---" "---"
row "first snapshot, s (cold cache)" "${T[local1]}" "${T[s31]}" "$(ratio "${T[s31]}" "${T[local1]}")" ""
row "first snapshot, MiB/s" "$(mibs "$size" "${T[local1]}")" "$(mibs "$size" "${T[s31]}")" "$(ratio "${T[local1]}" "${T[s31]}")" ">= 0.5"
row "unchanged re-snapshot, s" "${T[local2]}" "${T[s32]}" "$(ratio "${T[s32]}" "${T[local2]}")" ""
row "snapcrypt CPU first snapshot, s" "${U[local1]}" "${U[s31]}" "$(ratio "${U[s31]}" "${U[local1]}")" ""
row "versitygw CPU first snapshot, s" "" "${C[s31]}" "" ""
row "peak RSS first snapshot, MiB" "$((M[local1] / 1024))" "$((M[s31] / 1024))" "" ""
row "repository size, MiB" "$(($(du -sb "$local_repo" | cut -f1) / 1048576))" "$((stored / 1048576))" "" ""
echo
