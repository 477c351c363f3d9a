#!/usr/bin/env bash
# The prune part of make bench (BENCH_PARTS=prune): snapcrypt's
# forget --prune side by side with restic's on the same history, and one
# prune of a repository of many small snapshots. Called by bench.sh with
# B, bin and data set; runs on its own too:
#   B=/var/tmp/snapcrypt-bench bin=bin/snapcrypt data=/var/tmp/snapcrypt-bench/data scripts/bench-prune.sh
#
# BENCH_PRUNE_SRC: the tree that changes between snapshots ($data/tree);
# BENCH_PRUNE_SNAPS: snapshots of it (50), of which forget keeps the
# newest BENCH_PRUNE_KEEP (10); BENCH_PRUNE_MANY: small snapshots for the
# second figure (1000).
set -euo pipefail
: "${B:?}" "${bin:?}" "${data:?}"
src="${BENCH_PRUNE_SRC:-$data/tree}"
n="${BENCH_PRUNE_SNAPS:-50}"
keep="${BENCH_PRUNE_KEEP:-10}"
many="${BENCH_PRUNE_MANY:-1000}"
export RESTIC_PASSWORD=bench-password
P="$B/prune"
rm -rf "$P"
mkdir -p "$P"
key="file:$P/sc.key"
"$bin" keygen "$P/sc.key" >/dev/null 2>&1
"$bin" init -r "$P/sc-repo" -k "$key" >/dev/null
restic init -q -r "$P/restic-repo" >/dev/null

declare -A T M
measure() {
  local name=$1; shift
  /usr/bin/time -o "$P/time.out" -f '%e %M' "$@" >"$P/$name.log" 2>&1
  T[$name]=$(tail -1 "$P/time.out" | cut -d' ' -f1)
  M[$name]=$(tail -1 "$P/time.out" | cut -d' ' -f2)
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '| %-44s | %10s | %10s | %10s | %8s |\n' "$@"; }
mib() { echo $(($(du -sb "$1" | cut -f1) / 1048576)); }

if [ "${BENCH_PRUNE_ONLY_MANY:-}" = "" ]; then
# A changing tree: each snapshot rewrites about 2% of the files and adds
# a 4 MiB file of its own (the one before it goes).
work="$P/work"
cp -a "$src" "$work"
mapfile -t files < <(find "$work" -type f | sort)
for i in $(seq 1 "$n"); do
  for ((j = i % 50; j < ${#files[@]}; j += 50)); do
    head -c 512 /dev/urandom >> "${files[j]}"
  done
  rm -f "$work"/churn-*.bin
  head -c 4M /dev/urandom > "$work/churn-$i.bin"
  t=$(date -u -d "2025-01-01 +$i days" +%Y-%m-%dT%H:%M:%SZ)
  "$bin" snapshot -q -r "$P/sc-repo" -k "$key" --time "$t" --host bench "$work" >/dev/null
  restic backup -q -r "$P/restic-repo" --time "$(date -u -d "$t" '+%Y-%m-%d %H:%M:%S')" --host bench "$work" >/dev/null
done
sc_before=$(mib "$P/sc-repo"); re_before=$(mib "$P/restic-repo")
cp -a "$P/sc-repo" "$P/sc-history" # for the reads during a prune, below
measure scp "$bin" forget -r "$P/sc-repo" -k "$key" --keep-last "$keep" --prune --no-wait
measure rep restic forget -q -r "$P/restic-repo" --keep-last "$keep" --prune
sc_after=$(mib "$P/sc-repo"); re_after=$(mib "$P/restic-repo")
"$bin" check -r "$P/sc-repo" -k "$key" >/dev/null

echo "## prune ($n snapshots of a changing tree, forget all but $keep, then prune)"
row "figure" "snapcrypt" "restic" "ratio" "goal"
row "---" "---" "---" "---" "---"
row "forget + prune, s" "${T[scp]}" "${T[rep]}" "$(ratio "${T[scp]}" "${T[rep]}")" "<= 0.5"
row "peak RSS forget + prune, MiB" "$((M[scp] / 1024))" "$((M[rep] / 1024))" "$(ratio "${M[scp]}" "${M[rep]}")" ""
row "repository before, MiB" "$sc_before" "$re_before" "$(ratio "$sc_before" "$re_before")" ""
row "repository after, MiB" "$sc_after" "$re_after" "$(ratio "$sc_after" "$re_after")" "<= 1.05"
echo

# Reads beside a prune: a mount of the same history (before the forget)
# serves a reader looping over every file of the newest snapshot (page
# cache dropped per file: scripts/benchtool read) for BENCH_PRUNE_IDLE
# seconds, then while another process runs the same forget --prune; the
# figure is the reader's throughput during the prune over its idle
# throughput, median of BENCH_PRUNE_READS runs, each on a fresh copy.
tool="$P/benchtool"
go build -o "$tool" ./scripts/benchtool
mnt="$P/mnt"
mkdir -p "$mnt"
idle="${BENCH_PRUNE_IDLE:-8}"
mounted() { awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' /proc/self/mounts; }
unmount() { if mounted "$mnt"; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; fi; }
trap unmount EXIT
# readfor CMD...: runs the reader around CMD (or `sleep SECONDS`); sets
# RATE (MiB/s), ERRS and SECS (CMD's wall time).
readfor() {
  rm -f "$P/ready"
  "$tool" read -dir "$mnt/snapshots/latest" -ready "$P/ready" >"$P/read.out" 2>"$P/read.err" &
  local rp=$! t0 t1
  for _ in $(seq 600); do [ -e "$P/ready" ] && break; kill -0 "$rp" 2>/dev/null || break; sleep 0.05; done
  [ -e "$P/ready" ] || { cat "$P/read.err" >&2; echo "reader did not start" >&2; exit 1; }
  t0=$(date +%s%N)
  "$@" >"$P/readfor.log" 2>&1 || { cat "$P/readfor.log" >&2; exit 1; }
  t1=$(date +%s%N)
  kill "$rp"; wait "$rp" || { cat "$P/read.err" >&2; exit 1; }
  RATE=$(awk '{ print $10 }' "$P/read.out"); ERRS=$(awk '{ print $6 }' "$P/read.out")
  SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
}
RATIOS=() DETAIL="" ERRS_ALL=0
for rep in $(seq 1 "${BENCH_PRUNE_READS:-3}"); do
  rm -rf "$P/sc-reads"; cp -a "$P/sc-history" "$P/sc-reads"
  "$bin" mount -r "$P/sc-reads" -k "$key" "$mnt" >"$P/mount.log" 2>&1 &
  for _ in $(seq 600); do [ -e "$mnt/snapshots/latest" ] && break; sleep 0.05; done
  [ -e "$mnt/snapshots/latest" ] || { cat "$P/mount.log" >&2; exit 1; }
  readfor sleep 3 # warm-up: the mount's index and trees
  readfor sleep "$idle"; ri=$RATE; ERRS_ALL=$((ERRS_ALL + ERRS))
  readfor "$bin" forget -r "$P/sc-reads" -k "$key" --keep-last "$keep" --prune --no-wait; rp=$RATE; ps=$SECS; ERRS_ALL=$((ERRS_ALL + ERRS))
  RATIOS+=("$(ratio "$rp" "$ri")"); DETAIL="$DETAIL idle $ri during $rp (prune $ps s);"
  unmount; wait
done
echo "## mount reads beside a prune (newest snapshot of the same history; reader MiB/s:$DETAIL)"
row "figure" "snapcrypt" "" "" "goal"
row "---" "---" "---" "---" "---"
row "reader during prune / idle (median)" "$(printf '%s\n' "${RATIOS[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')" "per run: ${RATIOS[*]}" "" ">= 0.9"
row "read errors" "$ERRS_ALL" "" "" "0"
echo
fi

# Many small snapshots, spread in time by --time, taken eight at a time
# (each of its own directory): prune's cost per snapshot (a walk of each,
# and one manifest header read each).
small="$P/small"
"$bin" init -r "$P/many-repo" -k "$key" >/dev/null
seq 1 "$many" | xargs -P 8 -I{} sh -c '
  mkdir -p "$1/s$2" && head -c 4096 /dev/urandom > "$1/s$2/f" &&
  "$3" snapshot -q -r "$4" -k "$5" --time "$(date -u -d "2020-01-01 +$2 hours" +%Y-%m-%dT%H:%M:%SZ)" --host bench "$1/s$2" >/dev/null
' _ "$small" {} "$bin" "$P/many-repo" "$key"
"$bin" forget -r "$P/many-repo" -k "$key" --group-by host --keep-last $((many / 2)) >/dev/null 2>&1
measure many "$bin" prune -r "$P/many-repo" -k "$key" --no-wait
measure many2 "$bin" prune -r "$P/many-repo" -k "$key" --no-wait
echo "## prune of $many small snapshots"
row "figure" "snapcrypt" "" "" ""
row "---" "---" "---" "---" "---"
row "prune after forgetting half, s" "${T[many]}" "" "" ""
row "prune with nothing to do, s" "${T[many2]}" "" "" ""
row "peak RSS, MiB" "$((M[many] / 1024))" "" "" ""
echo
