#!/usr/bin/env bash
# make bench: snapcrypt side by side with its peers (restic, gocryptfs from
# Debian's packages) on the same generated data, in one run. Prints a table
# of times and ratios. Needs root (drops the page cache for cold figures).
#
# BENCH_DIR (default /var/tmp/snapcrypt-bench) keeps the data between runs
# (BENCH_DATA, default $BENCH_DIR/data, names other data of the same shape);
# BENCH_PARTS selects parts: snapshot, mount, rotate, s3, scale, prune
# (default all).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/bin/snapcrypt"
B="${BENCH_DIR:-/var/tmp/snapcrypt-bench}"
parts="${BENCH_PARTS:-snapshot mount rotate s3 scale prune}"
export RESTIC_PASSWORD=bench-password

need=()
command -v restic >/dev/null || need+=(restic)
command -v gocryptfs >/dev/null || need+=(gocryptfs)
command -v fusermount3 >/dev/null || need+=(fuse3)
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then apt-get install -y -qq "${need[@]}" >/dev/null; fi

mkdir -p "$B"
data="${BENCH_DATA:-$B/data}"
if [ ! -f "$data/big.bin" ]; then
  echo "generating data in $data: a 1 GiB incompressible file and a source tree" >&2
  mkdir -p "$data"
  head -c 1G /dev/urandom > "$data/big.bin"
  cp -a /usr/local/go/src "$data/tree"
fi
files=$(find "$data" -type f | wc -l)
size=$(du -sb "$data" | cut -f1)

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# measure NAME CMD...: runs CMD, records wall seconds and peak RSS (KiB).
declare -A T M
measure() {
  local name=$1; shift
  local out="$B/time.out"
  /usr/bin/time -o "$out" -f '%e %M' "$@" >/dev/null 2>/dev/null
  T[$name]=$(tail -1 "$out" | cut -d' ' -f1)
  M[$name]=$(tail -1 "$out" | cut -d' ' -f2)
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
row() { printf '| %-44s | %10s | %10s | %10s | %8s |\n' "$@"; }

echo "# snapcrypt bench, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "data: $files files, $((size / 1048576)) MiB ($data)"
echo

if [[ " $parts " == *" snapshot "* ]]; then
  rm -rf "$B/sc-repo" "$B/sc-off-repo" "$B/restic-repo"
  "$bin" keygen "$B/sc.key" 2>/dev/null || true
  "$bin" init -r "$B/sc-repo" -k "file:$B/sc.key" >/dev/null
  "$bin" init -r "$B/sc-off-repo" -k "file:$B/sc.key" --compression off >/dev/null
  restic init -q -r "$B/restic-repo" >/dev/null
  rsver=$(restic cat config -q -r "$B/restic-repo" 2>/dev/null | awk -F'[:,]' '/"version"/ { gsub(/ /, "", $2); print $2 }')
  # Compression on and off take turns with restic, so that load from
  # other work hits them alike.
  drop; measure sc1 "$bin" snapshot -r "$B/sc-repo" -k "file:$B/sc.key" "$data"
  drop; measure so1 "$bin" snapshot -r "$B/sc-off-repo" -k "file:$B/sc.key" "$data"
  drop; measure re1 restic backup -q -r "$B/restic-repo" "$data"
  drop; measure sc2 "$bin" snapshot -r "$B/sc-repo" -k "file:$B/sc.key" "$data"
  drop; measure re2 restic backup -q -r "$B/restic-repo" "$data"
  # The source tree alone, in fresh repositories: its compressed size.
  tree=$(du -sb "$data/tree" | cut -f1)
  rm -rf "$B/sct-repo" "$B/sot-repo" "$B/rst-repo"
  "$bin" init -r "$B/sct-repo" -k "file:$B/sc.key" >/dev/null
  "$bin" init -r "$B/sot-repo" -k "file:$B/sc.key" --compression off >/dev/null
  restic init -q -r "$B/rst-repo" >/dev/null
  "$bin" snapshot -q -r "$B/sct-repo" -k "file:$B/sc.key" "$data/tree" >/dev/null
  "$bin" snapshot -q -r "$B/sot-repo" -k "file:$B/sc.key" "$data/tree" >/dev/null
  restic backup -q -r "$B/rst-repo" "$data/tree" >/dev/null
  szt=$(du -sb "$B/sct-repo" | cut -f1) sot=$(du -sb "$B/sot-repo" | cut -f1) rst=$(du -sb "$B/rst-repo" | cut -f1)
  echo "## snapshot (snapcrypt: compression auto unless said; restic $(restic version | cut -d' ' -f2), repository version ${rsver:-?}, its default compression)"
  row "figure" "snapcrypt" "restic" "ratio" "goal"
  row "---" "---" "---" "---" "---"
  row "first snapshot, s (cold cache)" "${T[sc1]}" "${T[re1]}" "$(ratio "${T[sc1]}" "${T[re1]}")" "<= 1"
  row "first snapshot, compression off, s" "${T[so1]}" "" "$(ratio "${T[sc1]}" "${T[so1]}") (on/off)" "on/off <= 1.2"
  row "unchanged re-snapshot, s" "${T[sc2]}" "${T[re2]}" "$(ratio "${T[sc2]}" "${T[re2]}")" ""
  row "re-snapshot / first" "$(ratio "${T[sc2]}" "${T[sc1]}")" "$(ratio "${T[re2]}" "${T[re1]}")" "" "<= 0.10"
  row "peak RSS first snapshot, MiB" "$((M[sc1] / 1024))" "$((M[re1] / 1024))" "$(ratio "${M[sc1]}" "${M[re1]}")" "< 256"
  row "repository size, MiB" "$(($(du -sb "$B/sc-repo" | cut -f1) / 1048576))" "$(($(du -sb "$B/restic-repo" | cut -f1) / 1048576))" "" ""
  row "tree alone: repository / tree size" "$(ratio "$szt" "$tree")" "$(ratio "$rst" "$tree")" "$(ratio "$szt" "$rst")" "<= 0.45, <= restic"
  row "tree alone, compression off: repository / tree" "$(ratio "$sot" "$tree")" "" "" ""
  echo
fi

for part in mount rotate s3 scale prune; do
  if [[ " $parts " == *" $part "* ]] && [ -x "scripts/bench-$part.sh" ]; then
    B="$B" bin="$bin" data="$data" "scripts/bench-$part.sh"
  fi
done
