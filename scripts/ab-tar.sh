#!/usr/bin/env bash
# A/B of one mount figure between two snapcrypt binaries: the cold
# `tar cf - . | wc -c` of a tree through the mount. Each binary gets a
# repository it makes itself of the same tree (so two format versions can be
# compared); every run mounts afresh after dropping the page cache, and the
# order alternates. Prints one line a run: binary, seconds, the mount's CPU
# seconds and the segments it decrypted (.ctl/status).
#
#   A=old/snapcrypt B=bin/snapcrypt [TREE=dir] [REPS=6] [W=dir] scripts/ab-tar.sh
#
# Needs root (drop_caches) and fusermount3; TREE defaults to the bench's
# source tree (scripts/bench.sh makes it).
set -euo pipefail
: "${A:?A=path of the first binary}" "${B:?B=path of the second binary}"
tree="${TREE:-${BENCH_DIR:-/var/tmp/snapcrypt-bench}/data/tree}"
W="${W:-/var/tmp/snapcrypt-ab-tar}"
reps="${REPS:-6}"
declare -A BIN=([A]="$A" [B]="$B")
[ -d "$tree" ] || { echo "ab-tar: no tree at $tree" >&2; exit 1; }
[ -w /proc/sys/vm/drop_caches ] || { echo "ab-tar: needs root" >&2; exit 1; }
mkdir -p "$W"
for s in A B; do
  if [ ! -d "$W/repo-$s" ]; then
    "${BIN[$s]}" keygen "$W/key-$s" >/dev/null 2>&1
    "${BIN[$s]}" init -r "$W/repo-$s" -k "file:$W/key-$s" >/dev/null
    "${BIN[$s]}" snapshot -r "$W/repo-$s" -k "file:$W/key-$s" "$tree" >/dev/null 2>&1
  fi
done
run() {
  local s=$1 m="$W/mnt-$1"
  mkdir -p "$m"
  sync; echo 3 > /proc/sys/vm/drop_caches
  "${BIN[$s]}" mount -r "$W/repo-$s" -k "file:$W/key-$s" "$m" > "$W/log-$s" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do [ -d "$m/snapshots/latest" ] && break; sleep 0.1; done
  local t0 t1 cpu segs
  t0=$(date +%s.%N)
  tar cf - -C "$m/snapshots/latest" . | wc -c >/dev/null
  t1=$(date +%s.%N)
  cpu=$(awk '{print ($14+$15)/100}' "/proc/$pid/stat")
  segs=$(grep -o '"misses": [0-9]*' "$m/.ctl/status" | head -1 | awk '{print $2}')
  kill -INT "$pid"; wait "$pid" || true
  printf '%s %.3f cpu=%s segments=%s\n' "$s" "$(echo "$t1 - $t0" | bc)" "$cpu" "$segs"
}
for i in $(seq "$reps"); do
  if (( i % 2 )); then run A; run B; else run B; run A; fi
done
