#!/usr/bin/env bash
# Mount part of make bench (BENCH_PARTS contains mount): reads through
# `snapcrypt mount`, gocryptfs 2.3 and `restic mount` (Debian's packages) and
# natively, side by side in one run on the same data, and prints a markdown
# table of medians with the ratios and the goals of issue 3.
#
# Figures (each BENCH_REPS times, default 3; the median is shown; the four
# systems take turns within a repetition so that load from other work on the
# machine hits them alike):
#   cold cat   `cat big.bin >/dev/null` (1 GiB) after unmounting everything,
#              sync, dropping the page cache and mounting afresh
#   warm cat   the same file again, right after the cold read
#   tar        `tar cf - tree | wc -c`, cold
#   grep       `grep -r -c zzzz_never_found tree`, cold
#   peak RSS   VmHWM of the mount process after the cold read of big.bin on a
#              fresh mount
#   mount CPU  user + system CPU seconds of the mount process after that
#              cold read (a diagnostic: what the daemon costs per GiB)
#
# Called by scripts/bench.sh with B (bench dir), bin (snapcrypt binary) and
# data (big.bin and tree/) in the environment; runs alone too once bench.sh
# made the data. Needs root (drop_caches). Its repositories and mountpoints
# live in $B/bench-mount; the gocryptfs and restic copies of the data are
# kept between runs (rebuilt when the data changes), the snapcrypt
# repository is made afresh by the binary under test every run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
B="${B:-${BENCH_DIR:-/var/tmp/snapcrypt-bench}}"
bin="${bin:-$PWD/bin/snapcrypt}"
data="${data:-$B/data}"
reps="${BENCH_REPS:-3}"
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo +changes), binary built $(date -u -r "$bin" +%H:%M:%SZ 2>/dev/null || echo '?')"
start=$(date -u +%H:%M:%SZ)
export RESTIC_PASSWORD="${RESTIC_PASSWORD:-bench-password}"

die() { echo "bench-mount: $*" >&2; exit 1; }
[ -f "$data/big.bin" ] && [ -d "$data/tree" ] || die "no bench data in $data (run scripts/bench.sh first)"
[ -x "$bin" ] || die "no snapcrypt binary at $bin (make build)"
[ -w /proc/sys/vm/drop_caches ] || die "needs root: cold figures drop the page cache"
for t in gocryptfs restic fusermount3 tar grep; do
  command -v "$t" >/dev/null || die "$t is not installed"
done

W="$B/bench-mount"
mkdir -p "$W"
# A private copy: bin/snapcrypt may be rebuilt by others while this runs.
cp "$bin" "$W/snapcrypt.bin"
bin="$W/snapcrypt.bin"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# sc: snapcrypt with compression (auto, the default); so: compression off.
systems=(native sc so gc rs)
declare -A NAME=([native]=native [sc]=snapcrypt [so]="snapcrypt (compression off)" [gc]=gocryptfs [rs]=restic)
declare -A MNT=([sc]="$W/mnt-sc" [so]="$W/mnt-so" [gc]="$W/mnt-gc" [rs]="$W/mnt-rs")
declare -A ROOT=([native]="$data" [sc]="$W/mnt-sc/snapshots/latest" [so]="$W/mnt-so/snapshots/latest" [gc]="$W/mnt-gc" [rs]="$W/mnt-rs/snapshots/latest")
declare -A PID=()

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
umount_all() { local x; for x in sc so gc rs; do umount_one "$x"; done; }
cleanup() {
  local rc=$?
  trap - EXIT
  local x
  for x in sc so gc rs; do umount_one "$x" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mount_one SYS [plain]: mounts SYS in the background and waits until
# big.bin shows (plain: until the mount is there).
mount_one() {
  local s=$1 plain=${2:-} m=${MNT[$1]} log="$W/$1-mount.log"
  mkdir -p "$m"
  mounted "$m" && die "$m is still mounted"
  case $s in
    sc) "$bin" mount -r "$W/sc-repo" -k "file:$W/sc.key" "$m" >"$log" 2>&1 & ;;
    so) "$bin" mount -r "$W/so-repo" -k "file:$W/sc.key" "$m" >"$log" 2>&1 & ;;
    gc) gocryptfs -fg -q -passfile "$W/gc.pass" "$W/gc-cipher" "$m" >"$log" 2>&1 & ;;
    rs) restic mount --no-lock -r "$W/restic-repo" "$m" >"$log" 2>&1 & ;;
  esac
  PID[$s]=$!
  for _ in $(seq 1200); do
    if [ -n "$plain" ]; then mounted "$m" && return 0; elif [ -f "${ROOT[$s]}/big.bin" ]; then return 0; fi
    kill -0 "${PID[$s]}" 2>/dev/null || { cat "$log" >&2; die "${NAME[$s]} mount exited"; }
    sleep 0.05
  done
  cat "$log" >&2
  die "${NAME[$s]} mount at $m not ready after 60 s"
}

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# cold SYS: nothing mounted, page cache dropped, SYS mounted afresh.
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
# pairmed "A1 A2 ..." "B1 B2 ...": median of Ai / Bi, the ratio of each
# repetition's side-by-side pair (robust to load that changes over the run).
pairmed() {
  local -a a b
  local i out=()
  read -ra a <<<"$1"
  read -ra b <<<"$2"
  for i in "${!a[@]}"; do out+=("$(awk -v x="${a[$i]}" -v y="${b[$i]:-0}" 'BEGIN { if (y + 0 > 0) printf "%.3f", x / y }')"); done
  median "${out[@]}" | awk '{ if ($1 == "-" || $1 == "") print "-"; else if ($1 >= 0.1) printf "%.2f", $1; else printf "%.2g", $1 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 <= 0) print "-"; else if (a / b >= 0.1) printf "%.2f", a / b; else printf "%.2g", a / b }'; }
mibs() { awk -v s="$1" -v n="$2" 'BEGIN { if (s + 0 <= 0) print "-"; else printf "%.0f", n / 1048576 / s }'; }
# verdict OK: " (met)" or " (MISSED)"
verdict() { if [ "$1" = 1 ]; then echo " (met)"; else echo " (MISSED)"; fi; }
cmp_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "-" && a + 0 <= b + 0) ? 1 : 0 }'; }
cmp_ge() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "-" && a + 0 >= b + 0) ? 1 : 0 }'; }
cmp_lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a != "-" && a + 0 < b + 0) ? 1 : 0 }'; }

# The content goes to /dev/null: written to a file, it would time the
# writeback of 1 GiB of dirty pages competing with the read for the disk.
cat_big() { cat "$1/big.bin" >/dev/null; }
tar_tree() { (cd "$1" && tar cf - tree | wc -c); }
grep_tree() { (cd "$1" && { grep -r -c zzzz_never_found tree || [ $? = 1 ]; } | wc -l); }
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# --- the repositories, on the same data -------------------------------------
stamp="$(stat -c '%s %Y %i' "$data/big.bin") $(find "$data/tree" -type f | wc -l) $(du -sb "$data/tree" | cut -f1)"
size=$(stat -c %s "$data/big.bin")
umount_all

echo "bench-mount: snapcrypt repositories, compression auto and off (snapshots of $data)" >&2
rm -rf "$W/sc-repo" "$W/so-repo" "$W/sc.key"
"$bin" keygen "$W/sc.key" >/dev/null 2>&1
"$bin" init -r "$W/sc-repo" -k "file:$W/sc.key" >/dev/null
"$bin" init -r "$W/so-repo" -k "file:$W/sc.key" --compression off >/dev/null
for r in sc so; do
  "$bin" snapshot -r "$W/$r-repo" -k "file:$W/sc.key" "$data" >"$W/$r-snapshot.log" 2>&1 ||
    { cat "$W/$r-snapshot.log" >&2; die "snapcrypt snapshot failed"; }
done

if [ "$(cat "$W/gc.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "bench-mount: gocryptfs copy of the data" >&2
  rm -rf "$W/gc-cipher" "$W/gc.stamp"
  mkdir -p "$W/gc-cipher"
  echo bench-password >"$W/gc.pass"
  gocryptfs -init -q -passfile "$W/gc.pass" "$W/gc-cipher" >/dev/null
  mount_one gc plain
  cp -a "$data/." "${MNT[gc]}/"
  umount_one gc
  echo "$stamp" >"$W/gc.stamp"
fi

if [ "$(cat "$W/rs.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "bench-mount: restic repository of the data" >&2
  rm -rf "$W/restic-repo" "$W/rs.stamp"
  restic init -q -r "$W/restic-repo" >/dev/null
  (cd "$data" && restic backup -q -r "$W/restic-repo" .)
  echo "$stamp" >"$W/rs.stamp"
fi

# --- the figures (the ratio columns are medians of per-repetition ratios) ---
declare -A COLD WARM TAR GREP RSS CPU TARSZ GREPN
for s in "${systems[@]}"; do COLD[$s]=; WARM[$s]=; TAR[$s]=; GREP[$s]=; RSS[$s]=; CPU[$s]=; done
for rep in $(seq "$reps"); do
  echo "bench-mount: repetition $rep of $reps" >&2
  for s in "${systems[@]}"; do
    cold "$s"
    COLD[$s]+=" $(timed cat_big "${ROOT[$s]}")"
    if [ "$s" != native ]; then RSS[$s]+=" $(hwm "${PID[$s]}")"; CPU[$s]+=" $(cpu "${PID[$s]}")"; fi
    WARM[$s]+=" $(timed cat_big "${ROOT[$s]}")"
  done
  for s in "${systems[@]}"; do
    cold "$s"
    TAR[$s]+=" $(timed tar_tree "${ROOT[$s]}")"
    TARSZ[$s]=$(cat "$W/out")
  done
  for s in "${systems[@]}"; do
    cold "$s"
    GREP[$s]+=" $(timed grep_tree "${ROOT[$s]}")"
    GREPN[$s]=$(cat "$W/out")
  done
done
umount_all

declare -A mC mW mT mG mR mU tp
for s in "${systems[@]}"; do
  # shellcheck disable=SC2086
  { mC[$s]=$(median ${COLD[$s]}); mW[$s]=$(median ${WARM[$s]}); mT[$s]=$(median ${TAR[$s]}); mG[$s]=$(median ${GREP[$s]}); }
  if [ "$s" = native ]; then mR[$s]=-; mU[$s]=-; else
    # shellcheck disable=SC2086
    mR[$s]=$(awk -v k="$(median ${RSS[$s]})" 'BEGIN { printf "%.0f", k / 1024 }')
    # shellcheck disable=SC2086
    mU[$s]=$(median ${CPU[$s]})
  fi
  tp[$s]=$(mibs "${mC[$s]}" "$size")
done

row() { printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$@"; }
echo "## mount (median of $reps runs; ratios: median of per-run ratios; snapcrypt at $rev, compression auto)"
echo
row "figure" "native" "snapcrypt" "gocryptfs" "restic" "snapcrypt/native" "snapcrypt/gocryptfs" "goal"
row "---" "---:" "---:" "---:" "---:" "---:" "---:" "---"
row "cold \`cat\` 1 GiB, s" "${mC[native]}" "${mC[sc]}" "${mC[gc]}" "${mC[rs]}" "$(pairmed "${COLD[sc]}" "${COLD[native]}")" "$(pairmed "${COLD[sc]}" "${COLD[gc]}")" ""
a=$(pairmed "${COLD[native]}" "${COLD[sc]}") b=$(pairmed "${COLD[gc]}" "${COLD[sc]}")
row "cold sequential read, MiB/s" "${tp[native]}" "${tp[sc]}" "${tp[gc]}" "${tp[rs]}" "$a" "$b" \
  "≥ 0.75 native, ≥ 1.3 gocryptfs$(verdict "$(($(cmp_ge "$a" 0.75) & $(cmp_ge "$b" 1.3)))")"
a=$(pairmed "${WARM[sc]}" "${WARM[native]}")
row "warm re-read 1 GiB, s" "${mW[native]}" "${mW[sc]}" "${mW[gc]}" "${mW[rs]}" "$a" "$(pairmed "${WARM[sc]}" "${WARM[gc]}")" \
  "≤ 2 × native$(verdict "$(cmp_le "$a" 2)")"
a=$(pairmed "${TAR[sc]}" "${TAR[native]}") b=$(pairmed "${TAR[sc]}" "${TAR[gc]}")
row "cold \`tar cf - tree \| wc -c\`, s" "${mT[native]}" "${mT[sc]}" "${mT[gc]}" "${mT[rs]}" "$a" "$b" \
  "≤ 1.5 × native, ≤ 0.5 × gocryptfs$(verdict "$(($(cmp_le "$a" 1.5) & $(cmp_le "$b" 0.5)))")"
a=$(pairmed "${GREP[sc]}" "${GREP[native]}") b=$(pairmed "${GREP[sc]}" "${GREP[gc]}")
row "cold \`grep -r -c zzzz_never_found tree\`, s" "${mG[native]}" "${mG[sc]}" "${mG[gc]}" "${mG[rs]}" "$a" "$b" \
  "≤ 1.5 × native, ≤ 0.5 × gocryptfs$(verdict "$(($(cmp_le "$a" 1.5) & $(cmp_le "$b" 0.5)))")"
row "peak RSS of the mount reading 1 GiB, MiB" "-" "${mR[sc]}" "${mR[gc]}" "${mR[rs]}" "-" "$(pairmed "${RSS[sc]}" "${RSS[gc]}")" \
  "< 128 MiB$(verdict "$(cmp_lt "${mR[sc]}" 128)")"
row "CPU of the mount process for the cold read, s" "-" "${mU[sc]}" "${mU[gc]}" "${mU[rs]}" "-" "$(pairmed "${CPU[sc]}" "${CPU[gc]}")" "diagnostic"
echo
echo "### snapcrypt, compression auto against off (same data, same runs)"
echo
row5() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
row5 "figure" "compression auto" "compression off" "auto/off" "goal"
row5 "---" "---:" "---:" "---:" "---"
a=$(pairmed "${COLD[sc]}" "${COLD[so]}")
row5 "cold \`cat\` 1 GiB (incompressible), s" "${mC[sc]}" "${mC[so]}" "$a" "≤ 1.05$(verdict "$(cmp_le "$a" 1.05)")"
row5 "cold \`tar\` of the tree, s" "${mT[sc]}" "${mT[so]}" "$(pairmed "${TAR[sc]}" "${TAR[so]}")" ""
row5 "cold \`grep -r\` of the tree, s" "${mG[sc]}" "${mG[so]}" "$(pairmed "${GREP[sc]}" "${GREP[so]}")" ""
row5 "peak RSS reading 1 GiB, MiB" "${mR[sc]}" "${mR[so]}" "$(pairmed "${RSS[sc]}" "${RSS[so]}")" ""
row5 "repository size, MiB" "$(($(du -sb "$W/sc-repo" | cut -f1) / 1048576))" "$(($(du -sb "$W/so-repo" | cut -f1) / 1048576))" "" ""
echo
for s in sc so gc rs; do
  [ "${TARSZ[$s]}" = "${TARSZ[native]}" ] || echo "note: tar through ${NAME[$s]} gave ${TARSZ[$s]} bytes, natively ${TARSZ[native]}"
  [ "${GREPN[$s]}" = "${GREPN[native]}" ] || echo "note: grep through ${NAME[$s]} listed ${GREPN[$s]} files, natively ${GREPN[native]}"
done
echo "load average (1, 5, 15 min) at the start ($start): $load0; at the end ($(date -u +%H:%M:%SZ)): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "all runs (s): $(for s in "${systems[@]}"; do printf '%s cat [%s ] warm [%s ] tar [%s ] grep [%s ] mount CPU [%s ]; ' "${NAME[$s]}" "${COLD[$s]}" "${WARM[$s]}" "${TAR[$s]}" "${GREP[$s]}" "${CPU[$s]}"; done)"
echo
