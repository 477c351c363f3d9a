#!/usr/bin/env bash
# Scale part of make bench (BENCH_PARTS contains scale): a tree of many small
# files (issue 15) walked and read natively, through `snapcrypt mount` and
# through `restic mount` (Debian's restic 0.14), side by side in one run, and
# a markdown table of medians with the ratios and the issue's goals.
#
# Data: BENCH_SCALE_FILES files (default 200,000) of 1.5 KiB of random bytes,
# 500 to a directory (400 directories for the default), generated once and
# kept in $B/scale-data (another count: $B/scale-data-N).
#
# Figures (each BENCH_REPS times, default 3; the median is shown; the systems
# take turns within a repetition, and each ratio is the median of the
# per-repetition ratios):
#   find        `find . | wc -l`, cold: everything unmounted, sync, page
#               cache, dentries and inodes dropped, the system mounted afresh
#   tar         `tar cf - . | wc -c`, cold likewise (a fresh mount)
#   mount CPU   user + system CPU seconds of the mount process after each
#   peak RSS    VmHWM of the mount process after each
#   per entry   (VmRSS after find and a `du -s` - VmRSS before the find) /
#               entries found: what each entry the kernel holds costs the
#               daemon, roughly (the heap's own measure is fs's
#               TestEntryMemory). The du stats every entry: find alone
#               leaves most files without a node (lean listings, fs/lean.go)
#   lean        listings of the snapcrypt mount's find that were lean
#               (.ctl/status kernel.listed_lean)
#   segments    segment-cache misses of the snapcrypt mount during the cold
#               tar (.ctl/status): how many segments it decrypted
#
# BENCH_SCALE_BASE=/path/to/an/older/snapcrypt adds a column for that binary
# on the same repository (to measure one change side by side);
# BENCH_SCALE_SYSTEMS picks systems among native sc base rs (default: all
# that apply). Called by scripts/bench.sh with B and bin in the environment;
# runs alone too: `B=/var/tmp/snapcrypt-bench bin=$PWD/bin/snapcrypt
# BENCH_SCALE_FILES=20000 BENCH_REPS=1 scripts/bench-scale.sh`. Needs root
# (drop_caches), restic, fusermount3, python3. Repositories and mountpoints
# live in $B/bench-scale; the restic repository is kept between runs (rebuilt
# when the data changes), the snapcrypt one is made afresh by the binary under
# test every run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
B="${B:-${BENCH_DIR:-/var/tmp/snapcrypt-bench}}"
bin="${bin:-$PWD/bin/snapcrypt}"
base="${BENCH_SCALE_BASE:-}"
reps="${BENCH_REPS:-3}"
files="${BENCH_SCALE_FILES:-200000}"
per=500
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo +changes), binary built $(date -u -r "$bin" +%H:%M:%SZ 2>/dev/null || echo '?')"
start=$(date -u +%H:%M:%SZ)
export RESTIC_PASSWORD="${RESTIC_PASSWORD:-bench-password}"

die() { echo "bench-scale: $*" >&2; exit 1; }
say() { echo "bench-scale: $*" >&2; }
[ -x "$bin" ] || die "no snapcrypt binary at $bin (make build)"
[ -z "$base" ] || [ -x "$base" ] || die "no binary at BENCH_SCALE_BASE=$base"
[ -w /proc/sys/vm/drop_caches ] || die "needs root: cold figures drop the page cache"
for t in restic fusermount3 tar find python3; do
  command -v "$t" >/dev/null || die "$t is not installed"
done
((files >= per)) || die "BENCH_SCALE_FILES must be at least $per"

data="$B/scale-data"
[ "$files" = 200000 ] || data="$B/scale-data-$files"
W="$B/bench-scale"
mkdir -p "$W"
# Private copies: bin/snapcrypt may be rebuilt by others while this runs.
cp "$bin" "$W/snapcrypt.bin"
bin="$W/snapcrypt.bin"
if [ -n "$base" ]; then cp "$base" "$W/snapcrypt-base.bin"; base="$W/snapcrypt-base.bin"; fi
load0=$(cut -d' ' -f1-3 /proc/loadavg)

default_systems="native sc${base:+ base} rs"
read -ra systems <<<"${BENCH_SCALE_SYSTEMS:-$default_systems}"
has() { [[ " ${systems[*]} " == *" $1 "* ]]; }
declare -A NAME=([native]=native [sc]=snapcrypt [base]="snapcrypt (base)" [rs]=restic)
declare -A MNT=([sc]="$W/mnt-sc" [base]="$W/mnt-base" [rs]="$W/mnt-rs")
declare -A ROOT=([native]="$data" [sc]="$W/mnt-sc/snapshots/latest" [base]="$W/mnt-base/snapshots/latest" [rs]="$W/mnt-rs/snapshots/latest")
declare -A PID=()
mounts=(sc base rs)

mounted() { awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' /proc/self/mounts; }

# umount_one SYS: unmounts SYS (if mounted) and waits for its process to end.
umount_one() {
  local s=$1 m=${MNT[$1]} pid=${PID[$1]:-}
  if mounted "$m"; then
    fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PID[$s]=
  fi
  if mounted "$m"; then die "could not unmount $m"; fi
}
umount_all() { local x; for x in "${mounts[@]}"; do umount_one "$x"; done; }
cleanup() {
  local rc=$?
  trap - EXIT
  local x
  for x in "${mounts[@]}"; do umount_one "$x" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mount_one SYS: mounts SYS in the background and waits until the first
# directory of the tree shows.
mount_one() {
  local s=$1 m=${MNT[$1]} log="$W/$1-mount.log"
  mkdir -p "$m"
  mounted "$m" && die "$m is still mounted"
  case $s in
    sc) "$bin" mount -r "$W/sc-repo" -k "file:$W/sc.key" "$m" >"$log" 2>&1 & ;;
    base) "$base" mount -r "$W/sc-repo" -k "file:$W/sc.key" "$m" >"$log" 2>&1 & ;;
    rs) restic mount --no-lock -r "$W/restic-repo" "$m" >"$log" 2>&1 & ;;
  esac
  PID[$s]=$!
  for _ in $(seq 2400); do
    [ -d "${ROOT[$s]}/d000" ] && return 0
    kill -0 "${PID[$s]}" 2>/dev/null || { cat "$log" >&2; die "${NAME[$s]} mount exited"; }
    sleep 0.05
  done
  cat "$log" >&2
  die "${NAME[$s]} mount at $m not ready after 120 s"
}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# cold SYS: nothing mounted, caches dropped, SYS mounted afresh.
cold() { umount_all; drop; if [ "$1" != native ]; then mount_one "$1"; fi; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# timed CMD...: runs CMD (stdout to $W/out), prints wall seconds.
timed() {
  local t0 t1
  t0=$(now)
  "$@" >"$W/out"
  t1=$(now)
  secs "$t0" "$t1"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# pairmed "A1 A2 ..." "B1 B2 ...": median of Ai / Bi.
pairmed() {
  local -a a b
  local i out=()
  read -ra a <<<"$1"
  read -ra b <<<"$2"
  ((${#a[@]} && ${#b[@]})) || { echo -; return; }
  for i in "${!a[@]}"; do out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]:-0}" 'BEGIN { if (y + 0 > 0) printf "%.3f", x / y }')"); done
  median "${out[@]}" | awk '{ if ($1 == "-" || $1 == "") print "-"; else if ($1 >= 0.1) printf "%.2f", $1; else printf "%.2g", $1 }'
}
verdict() { if [ "$1" = 1 ]; then echo " (met)"; else echo " (MISSED)"; fi; }
cmp_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "-" && a + 0 <= b + 0) ? 1 : 0 }'; }
cmp_lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "-" && a + 0 < b + 0) ? 1 : 0 }'; }

find_tree() { (cd "$1" && find . | wc -l); }
du_tree() { (cd "$1" && du -s >/dev/null); }
tar_tree() { (cd "$1" && tar cf - . | wc -c); }
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# segmisses SYS: segment-cache misses so far of a snapcrypt mount.
segmisses() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cache"]["segments"]["misses"])' "${MNT[$1]}/.ctl/status" 2>/dev/null || echo -
}
# leanlists SYS: lean listings so far of a snapcrypt mount.
leanlists() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["kernel"].get("listed_lean", "-"))' "${MNT[$1]}/.ctl/status" 2>/dev/null || echo -
}

# --- the data and the repositories -----------------------------------------
dirs=$((files / per))
if [ "$(cat "$data/.complete" 2>/dev/null)" != "$dirs x $per" ]; then
  say "generating $dirs directories of $per files of 1.5 KiB in $data"
  rm -rf "$data"
  mkdir -p "$data"
  python3 - "$data" "$dirs" "$per" <<'EOF'
import os, sys
root, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = os.path.join(root, "d%03d" % d)
    os.mkdir(p)
    for i in range(per):
        with open(os.path.join(p, "f%04d.txt" % i), "wb") as f:
            f.write(os.urandom(1536))
EOF
  echo "$dirs x $per" >"$data/.complete"
fi
entries=$(( $(find "$data" | wc -l) ))
stamp="$(stat -c %Y "$data/.complete") $entries"
umount_all

if has sc || has base; then
  say "snapcrypt repository (snapshot of $data)"
  rm -rf "$W/sc-repo" "$W/sc.key"
  "$bin" keygen "$W/sc.key" >/dev/null 2>&1
  "$bin" init -r "$W/sc-repo" -k "file:$W/sc.key" >/dev/null
  t0=$(now)
  "$bin" snapshot -r "$W/sc-repo" -k "file:$W/sc.key" "$data" >"$W/sc-snapshot.log" 2>&1 ||
    { cat "$W/sc-snapshot.log" >&2; die "snapcrypt snapshot failed"; }
  say "snapcrypt snapshot took $(secs "$t0" "$(now)") s"
fi
if has rs && [ "$(cat "$W/rs.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "restic repository of the data"
  rm -rf "$W/restic-repo" "$W/rs.stamp"
  restic init -q -r "$W/restic-repo" >/dev/null
  (cd "$data" && restic backup -q -r "$W/restic-repo" .)
  echo "$stamp" >"$W/rs.stamp"
fi

# --- the figures -------------------------------------------------------------
declare -A FIND TAR FCPU TCPU FRSS TRSS PERENT SEG LEAN NF NT
for s in "${systems[@]}"; do FIND[$s]=; TAR[$s]=; FCPU[$s]=; TCPU[$s]=; FRSS[$s]=; TRSS[$s]=; PERENT[$s]=; SEG[$s]=; LEAN[$s]=; done
for rep in $(seq "$reps"); do
  say "repetition $rep of $reps"
  for s in "${systems[@]}"; do
    cold "$s"
    [ "$s" = native ] || r0=$(rss "${PID[$s]}")
    FIND[$s]+=" $(timed find_tree "${ROOT[$s]}")"
    NF[$s]=$(cat "$W/out")
    if [ "$s" != native ]; then
      FCPU[$s]+=" $(cpu "${PID[$s]}")"
      FRSS[$s]+=" $(hwm "${PID[$s]}")"
      if [ "$s" = sc ] || [ "$s" = base ]; then LEAN[$s]+=" $(leanlists "$s")"; fi
      du_tree "${ROOT[$s]}"
      PERENT[$s]+=" $(awk -v a="$r0" -v b="$(rss "${PID[$s]}")" -v n="${NF[$s]}" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')"
    fi
  done
  for s in "${systems[@]}"; do
    cold "$s"
    if [ "$s" = sc ] || [ "$s" = base ]; then m0=$(segmisses "$s"); fi
    TAR[$s]+=" $(timed tar_tree "${ROOT[$s]}")"
    NT[$s]=$(cat "$W/out")
    if [ "$s" != native ]; then
      TCPU[$s]+=" $(cpu "${PID[$s]}")"
      TRSS[$s]+=" $(hwm "${PID[$s]}")"
    fi
    if [ "$s" = sc ] || [ "$s" = base ]; then
      SEG[$s]+=" $(awk -v a="$m0" -v b="$(segmisses "$s")" 'BEGIN { if (a == "-" || b == "-") print "-"; else print b - a }')"
    fi
  done
done
umount_all

declare -A mF mT mFC mTC mFR mTR mPE mS mL
for s in "${systems[@]}"; do
  # shellcheck disable=SC2086
  { mF[$s]=$(median ${FIND[$s]}); mT[$s]=$(median ${TAR[$s]}); }
  if [ "$s" = native ]; then
    mFC[$s]=-; mTC[$s]=-; mFR[$s]=-; mTR[$s]=-; mPE[$s]=-; mS[$s]=-; mL[$s]=-
  else
    # shellcheck disable=SC2086
    {
      mFC[$s]=$(median ${FCPU[$s]}); mTC[$s]=$(median ${TCPU[$s]}); mPE[$s]=$(median ${PERENT[$s]} | awk '{ printf "%.0f\n", $1 }')
      mFR[$s]=$(awk -v k="$(median ${FRSS[$s]})" 'BEGIN { printf "%.0f", k / 1024 }')
      mTR[$s]=$(awk -v k="$(median ${TRSS[$s]})" 'BEGIN { printf "%.0f", k / 1024 }')
      mS[$s]=$(median ${SEG[$s]:-} | awk '{ if ($1 == "-") print; else printf "%.0f\n", $1 }')
      mL[$s]=$(median ${LEAN[$s]:-} | awk '{ if ($1 == "-") print; else printf "%.0f\n", $1 }')
    }
  fi
done
# row FIGURE ARRAY RATIO... : one table row, a value per system, then the rest.
row() {
  local fig=$1 s line x
  local -n a=$2
  shift 2
  line="| $fig |"
  for s in "${systems[@]}"; do line+=" ${a[$s]:--} |"; done
  for x in "$@"; do line+=" $x |"; done
  echo "$line"
}
ref=rs
has rs || ref=
head="| figure |"
sep="| --- |"
for s in "${systems[@]}"; do head+=" ${NAME[$s]} |"; sep+=" ---: |"; done
head+=" snapcrypt/native |"; sep+=" ---: |"
if has base; then head+=" snapcrypt/base |"; sep+=" ---: |"; fi
if [ -n "$ref" ]; then head+=" snapcrypt/restic |"; sep+=" ---: |"; fi
head+=" goal |"; sep+=" --- |"
# ratios "VALUES ARRAY" [native|-]: the ratio cells of a row.
ratios() {
  local -n v=$1
  local out=()
  if [ "${2:-}" = native ]; then out+=("$(pairmed "${v[sc]:-}" "${v[native]:-}")"); else out+=(-); fi
  if has base; then out+=("$(pairmed "${v[sc]:-}" "${v[base]:-}")"); fi
  if [ -n "$ref" ]; then out+=("$(pairmed "${v[sc]:-}" "${v[rs]:-}")"); fi
  printf '%s\n' "${out[@]}"
}

echo "## scale: $((entries - 1)) entries, $files files of 1.5 KiB in $dirs directories (median of $reps runs; ratios: median of per-run ratios; snapcrypt at $rev)"
echo
echo "$head"
echo "$sep"
mapfile -t r < <(ratios FIND native)
row "cold \`find . \| wc -l\`, s" mF "${r[@]}" "≤ 2 × native$(verdict "$(cmp_le "${r[0]}" 2)")"
mapfile -t r < <(ratios TAR native)
row "cold \`tar cf - . \| wc -c\`, s" mT "${r[@]}" "≤ 0.7 × native$(verdict "$(cmp_le "${r[0]}" 0.7)")"
mapfile -t r < <(ratios FCPU)
row "CPU of the mount process for find, s" mFC "${r[@]}" "diagnostic"
mapfile -t r < <(ratios TCPU)
row "CPU of the mount process for tar, s" mTC "${r[@]}" "< 4 s$(verdict "$(cmp_lt "${mTC[sc]:--}" 4)")"
mapfile -t r < <(ratios FRSS)
row "peak RSS of the mount after find, MiB" mFR "${r[@]}" ""
mapfile -t r < <(ratios TRSS)
row "peak RSS of the mount after tar, MiB" mTR "${r[@]}" "< 160 MiB$(verdict "$(cmp_lt "${mTR[sc]:--}" 160)")"
mapfile -t r < <(ratios PERENT)
row "RSS growth per entry held after find and \`du -s\`, bytes" mPE "${r[@]}" "diagnostic (garbage included; the heap's own: fs TestEntryMemory)"
mapfile -t r < <(ratios LEAN)
row "lean listings of the find (files without nodes), of $dirs" mL "${r[@]}" "diagnostic"
mapfile -t r < <(ratios SEG)
row "segments decrypted by the cold tar" mS "${r[@]}" "diagnostic"
echo
for s in "${systems[@]}"; do
  [ "${NF[$s]}" = "$entries" ] || echo "note: find through ${NAME[$s]} listed ${NF[$s]} entries, the data has $entries"
  [ "$s" = native ] || [ "${NT[$s]}" = "${NT[native]:-${NT[$s]}}" ] || echo "note: tar through ${NAME[$s]} gave ${NT[$s]} bytes, natively ${NT[native]}"
done
echo "load average (1, 5, 15 min) at the start ($start): $load0; at the end ($(date -u +%H:%M:%SZ)): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "all runs: $(for s in "${systems[@]}"; do printf '%s find [%s ] tar [%s ] CPU find [%s ] tar [%s ] RSS find [%s ] tar [%s ] KiB; ' "${NAME[$s]}" "${FIND[$s]}" "${TAR[$s]}" "${FCPU[$s]}" "${TCPU[$s]}" "${FRSS[$s]}" "${TRSS[$s]}"; done)"
echo
