#!/usr/bin/env bash
# Rotation part of make bench (BENCH_PARTS contains rotate): the key-rotation
# figures of issue 4, side by side with restic where restic has a peer, and
# a markdown table of medians with ratios and goals.
#
#   (a) `snapcrypt rotate` of a repository holding 100,000 wrapped DEKs on
#       the local store (made through the library: scripts/benchtool fill
#       calls Keychain.NewDEK in parallel, one single object per DEK, made
#       afresh for every repetition); DEKs/s, goal >= 20,000, timed from
#       the start of the process to the old prefix deleted (retired, and
#       nothing left under deks/<old>/ for any reader), from the rotate
#       command's "timing:" line; the wall time of the process, which also
#       frees the old files' space, is shown beside it. Then a second
#       rotation of the same repository, whose DEKs are in DEK packs by then
#       (what every rotation after the first finds). The first rotation on
#       tmpfs as a diagnostic.
#   (b) two repositories with the same number of DEKs (BENCH_ROT_DEKS, 2,000)
#       and 10x different content (a tenth of big.bin vs all the data)
#       rotate within 10% of each other (BENCH_ROT_B_REPS pairs, default
#       9: the median of the per-pair ratios).
#   (c) what restic must do to replace a master key, `restic copy` of the
#       same data into a new repository, vs `snapcrypt rotate`.
#   (d) a reader looping over every file of the tree snapshot on a mount
#       (scripts/benchtool read: each file's pages are dropped from the page
#       cache first, so every read reaches the daemon), idle vs while the
#       mount rotates the 100,000-DEK repository through .ctl/rotate (one
#       rotation after another, for as long as an idle window); goal
#       >= 0.9. Diagnostics after it: the same rotation through the mount
#       with no reader, and the reader while `snapcrypt rotate` (another
#       process) rotates the repository.
#
# BENCH_ROT_STEPS (default "a b c d") selects steps.
# Every figure BENCH_REPS times (default 3; (b) at least 9 pairs, (d) at
# least 5 runs: BENCH_ROT_B_REPS, BENCH_ROT_D_REPS), median shown; timed rotations
# and copies start with the page cache dropped. Called by scripts/bench.sh
# with B, bin and data in the environment; runs alone too once bench.sh made
# the data. Needs root (drop_caches), restic, jq and Go (to build benchtool).
# Works in $B/bench-rotate; the restic repository is kept between runs.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
B="${B:-${BENCH_DIR:-/var/tmp/snapcrypt-bench}}"
bin="${bin:-$PWD/bin/snapcrypt}"
data="${data:-$B/data}"
reps="${BENCH_REPS:-3}"
manydeks="${BENCH_ROT_MANY:-100000}"
samedeks="${BENCH_ROT_DEKS:-2000}"
breps="${BENCH_ROT_B_REPS:-$((reps < 9 ? 9 : reps))}" # pairs for (b)
# (d)'s per-run ratio moves by ±0.1 on a shared 2-core machine (the idle
# rate alone drifts by a fifth within a minute, and by half when the host
# steals CPU time): at least 5 runs with little steal.
dreps="${BENCH_ROT_D_REPS:-$((reps < 5 ? 5 : reps))}"
idle="${BENCH_ROT_IDLE:-10}" # seconds of each idle reader window
steps="${BENCH_ROT_STEPS:-a b c d}"
has() { [[ " $steps " == *" $1 "* ]]; }
rev="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- 2>/dev/null || echo +changes), binary built $(date -u -r "$bin" +%H:%M:%SZ 2>/dev/null || echo '?')"
export RESTIC_PASSWORD="${RESTIC_PASSWORD:-bench-password}"
export RESTIC_FROM_PASSWORD="$RESTIC_PASSWORD"

die() { echo "bench-rotate: $*" >&2; exit 1; }
say() { echo "bench-rotate: $*" >&2; }
[ -f "$data/big.bin" ] && [ -d "$data/tree" ] || die "no bench data in $data (run scripts/bench.sh first)"
[ -x "$bin" ] || die "no snapcrypt binary at $bin (make build)"
[ -w /proc/sys/vm/drop_caches ] || die "needs root: timed runs drop the page cache"
[ -x /usr/bin/time ] || die "/usr/bin/time is not installed (apt-get install time)"
for t in restic jq go fusermount3; do command -v "$t" >/dev/null || die "$t is not installed"; done

W="$B/bench-rotate"
shm="/dev/shm/snapcrypt-bench-rotate.$$"
mnt="$W/mnt"
mkdir -p "$W"
# A private copy: bin/snapcrypt may be rebuilt by others while this runs.
cp "$bin" "$W/snapcrypt.bin"
bin="$W/snapcrypt.bin"
start=$(date -u +%H:%M:%SZ) load0=$(cut -d' ' -f1-3 /proc/loadavg)
mountpid= readpid=

mounted() { awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' /proc/self/mounts; }
unmount() {
  if mounted "$mnt"; then
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
  if [ -n "$mountpid" ]; then
    for _ in $(seq 100); do kill -0 "$mountpid" 2>/dev/null || break; sleep 0.1; done
    kill "$mountpid" 2>/dev/null || true
    wait "$mountpid" 2>/dev/null || true
    mountpid=
  fi
}
cleanup() {
  local rc=$?
  trap - EXIT
  if [ -n "$readpid" ]; then kill "$readpid" 2>/dev/null || true; wait "$readpid" 2>/dev/null || true; fi
  unmount
  rm -rf "$shm"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 <= 0) print "-"; else if (a / b >= 0.1) printf "%.2f", a / b; else printf "%.2g", a / b }'; }
f1() { awk -v x="$1" 'BEGIN { if (x == "-") print x; else printf "%.1f", x }'; }
f0() { awk -v x="$1" 'BEGIN { if (x == "-") print x; else printf "%.0f", x }'; }
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
per() { awk -v n="$1" -v s="$2" 'BEGIN { if (s + 0 <= 0) print "-"; else printf "%.0f", n / s }'; }
verdict() { if [ "$1" = 1 ]; then echo " (met)"; else echo " (MISSED)"; fi; }
between() { awk -v a="$1" -v lo="$2" -v hi="$3" 'BEGIN { print (a != "-" && a + 0 >= lo && a + 0 <= hi) ? 1 : 0 }'; }

tool="$W/benchtool"
say "building scripts/benchtool"
go build -o "$tool" ./scripts/benchtool || die "scripts/benchtool does not build"

rm -rf "$W/keys"
mkdir -p "$W/keys"
kn=0
declare -A KEY REPO
# newkey: a fresh key file in NEWKEY.
newkey() { kn=$((kn + 1)); NEWKEY="$W/keys/k$kn"; "$bin" keygen "$NEWKEY" >/dev/null 2>&1; }
# mkrepo NAME DIR PATH...: a repository at DIR, with one snapshot of PATH if given.
mkrepo() {
  local name=$1 dir=$2
  shift 2
  rm -rf "$dir"
  newkey
  KEY[$name]=$NEWKEY REPO[$name]=$dir
  "$bin" init -r "$dir" -k "file:$NEWKEY" >/dev/null
  if (($#)); then
    "$bin" snapshot -r "$dir" -k "file:$NEWKEY" "$@" >"$W/snapshot.log" 2>&1 || { cat "$W/snapshot.log" >&2; die "snapshot into $dir failed"; }
  fi
}
fill() { "$tool" fill -r "${REPO[$1]}" -k "file:${KEY[$1]}" -total "$2" >&2; }
deks() {
  "$bin" status -r "${REPO[$1]}" -k "file:${KEY[$1]}" --json |
    jq '[.generations[] | select(.state == "current") | .wrapped_deks] | add'
}
# rot NAME: drops the page cache, rotates NAME to a fresh key; LAST = seconds,
# LASTCPU = CPU seconds (user + system) of the rotate process, LASTDEKS =
# wrapped DEKs rotated.
rot() {
  local t0 t1
  LASTDEKS=$(deks "$1")
  newkey
  drop
  t0=$(now)
  /usr/bin/time -o "$W/rotate.time" -f '%U %S' "$bin" rotate -r "${REPO[$1]}" -k "file:${KEY[$1]}" --new-key "file:$NEWKEY" >"$W/rotate.log" 2>&1 ||
    { cat "$W/rotate.log" "$W/rotate.time" >&2; die "rotate $1 failed"; }
  t1=$(now)
  KEY[$1]=$NEWKEY
  LAST=$(secs "$t0" "$t1")
  # to the old prefix deleted, from "timing: ... old prefix deleted at X s"
  LASTDEL=$(awk '/^timing:/ { for (i = 1; i < NF; i++) if ($i == "at") { print $(i + 1); exit } }' "$W/rotate.log")
  LASTDEL=${LASTDEL:-$LAST}
  LASTCPU=$(awk 'END { printf "%.2f", $1 + $2 }' "$W/rotate.time")
  [ "$(deks "$1")" = "$LASTDEKS" ] || die "rotate $1: $LASTDEKS DEKs before, $(deks "$1") after"
}

# --- repositories -------------------------------------------------------------
stamp="$(stat -c '%s %Y %i' "$data/big.bin") $(find "$data/tree" -type f | wc -l) $(du -sb "$data/tree" | cut -f1)"
size=$(du -sb "$data" | cut -f1)
small=$((size / 10))

# manyrepo NAME DIR: a repository with a snapshot of tree/ and $manydeks
# DEKs, each a single object as Keychain.NewDEK writes it.
manyrepo() {
  say "repository with $manydeks DEKs at $2 (snapshot of tree/, then Keychain.NewDEK)"
  mkrepo "$1" "$2" "$data/tree"
  fill "$1" "$manydeks"
}
if has b || has c; then
  say "repositories of $((small / 1048576)) MiB and $((size / 1048576)) MiB"
  mkdir -p "$W/small-data"
  [ "$(stat -c %s "$W/small-data/part.bin" 2>/dev/null)" = "$small" ] || head -c "$small" "$data/big.bin" >"$W/small-data/part.bin"
  mkrepo small "$W/repo-small" "$W/small-data"
  mkrepo full "$W/repo-full" "$data"
fi
if has c && [ "$(cat "$W/restic.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "restic repository of the data"
  rm -rf "$W/restic-src" "$W/restic.stamp"
  restic init -q -r "$W/restic-src" >/dev/null
  (cd "$data" && restic backup -q -r "$W/restic-src" .)
  echo "$stamp" >"$W/restic.stamp"
fi

# --- (a) 100,000 DEKs ---------------------------------------------------------
declare -A T N C
for r in many manywall manypk shm fullnat resticcopy small full; do T[$r]=; N[$r]=; C[$r]=; done
has a && for rep in $(seq "$reps"); do
  manyrepo many "$W/repo-many"
  manyrepo shm "$shm/repo"
  say "(a) rotation of $manydeks DEKs, $rep of $reps"
  rot many; T[many]+=" $LASTDEL" T[manywall]+=" $LAST" C[many]+=" $LASTCPU"; N[many]=$LASTDEKS
  rot many; T[manypk]+=" $LASTDEL"; N[manypk]=$LASTDEKS
  rot shm; T[shm]+=" $LASTDEL" C[shm]+=" $LASTCPU"; N[shm]=$LASTDEKS
done

# --- (c) restic copy vs snapcrypt rotate, same data ----------------------------
has c && for rep in $(seq "$reps"); do
  say "(c) snapcrypt rotate vs restic copy, $rep of $reps"
  rot full; T[fullnat]+=" $LAST"; N[fullnat]=$LASTDEKS
  rm -rf "$W/restic-dst"
  restic init -q -r "$W/restic-dst" --from-repo "$W/restic-src" --copy-chunker-params >/dev/null
  drop
  t0=$(now)
  restic copy -q -r "$W/restic-dst" --from-repo "$W/restic-src" >"$W/restic-copy.log" 2>&1 ||
    { cat "$W/restic-copy.log" >&2; die "restic copy failed"; }
  T[resticcopy]+=" $(secs "$t0" "$(now)")"
done
rm -rf "$W/restic-dst"

# --- (b) same DEKs, 10x the data ----------------------------------------------
if has b; then
  fill small "$samedeks"
  fill full "$samedeks"
fi
# Short rotations whose time is mostly syncfs latency of a shared file
# system: more pairs, alternating which goes first.
has b && for rep in $(seq "$breps"); do
  say "(b) rotation of $samedeks DEKs, small and large repository, $rep of $breps"
  if ((rep % 2)); then
    rot small; T[small]+=" $LAST" C[small]+=" $LASTCPU"; N[small]=$LASTDEKS
    rot full; T[full]+=" $LAST" C[full]+=" $LASTCPU"; N[full]=$LASTDEKS
  else
    rot full; T[full]+=" $LAST" C[full]+=" $LASTCPU"; N[full]=$LASTDEKS
    rot small; T[small]+=" $LAST" C[small]+=" $LASTCPU"; N[small]=$LASTDEKS
  fi
done

# --- (d) reader throughput, idle and during a rotation on the mount ------------
# The observer of (d): every pollgap seconds, a stat and a read of
# .ctl/status and a bash pattern match for rotation.state, with no process
# started but sleep. It runs the same way in the idle windows as during a rotation:
# the observer's cost (jq, started ten times a second, took 0.2 CPU of a
# 2-core machine) must not count as the rotation's.
pollgap=0.2
# pollstate: STATE = rotation.state of .ctl/status ("?" if not found),
# STARTED = rotation.started (empty if none); PACE = the pacer's factor and
# reader share, as last seen ("factor/share").
# The stat first (as cat and jq do) has the mount show a content at most
# 1 s old; read(2) alone may get one up to 10 s old.
pollstate() {
  local st=
  [ -e "$mnt/.ctl/status" ] || die "$mnt/.ctl/status is gone"
  IFS= read -r -d '' st <"$mnt/.ctl/status" || true
  STATE='?' STARTED=
  if [[ $st =~ \"rotation\":\ *\{[^}]*\"state\":\ *\"([a-z]+)\" ]]; then STATE=${BASH_REMATCH[1]}; fi
  if [[ $st =~ \"rotation\":\ *\{[^}]*\"state\":[^}]*\"started\":\ *\"([^\"]+)\" ]]; then STARTED=${BASH_REMATCH[1]}; fi
  if [[ $st =~ \"pace\":\ *\{[^}]*\"factor\":\ *([0-9.]+)[^}]*\"reader_share\":\ *([0-9.e-]+) ]]; then printf -v PACE '%s/%.2f' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"; fi
}
# observe SECONDS: polls .ctl/status for SECONDS (a whole number).
observe() {
  local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
  while ((${EPOCHREALTIME/./} < end)); do
    pollstate
    sleep "$pollgap"
  done
}
# ctlrot: rotates the mounted repository to a fresh key through .ctl/rotate
# and waits until .ctl/status says done; ROT = seconds.
ctlrot() {
  local t0 c0 s0
  newkey
  PACE=-
  pollstate
  s0=$STARTED
  c0=$(pidcpu "$mountpid")
  t0=$(now)
  printf 'file:%s\n' "$NEWKEY" >"$mnt/.ctl/rotate" ||
    { jq . "$mnt/.ctl/status" >&2 || true; die "write to .ctl/rotate failed"; }
  for i in $(seq 18000); do
    pollstate
    # Until the status shows this rotation's start, it may still show the
    # last one's "done".
    [ "$STARTED" = "$s0" ] && STATE=pending
    case $STATE in
      done) break ;;
      running | retiring) sleep "$pollgap" ;;
      pending) ((i < 25)) || die "rotation through the mount: not started 5 s after the request"; sleep "$pollgap" ;;
      *) jq . "$mnt/.ctl/status" >&2; die "rotation through the mount: state $STATE" ;;
    esac
  done
  [ "$STATE" = done ] || die "rotation through the mount did not finish in an hour"
  LASTPACE=$PACE
  ROT=$(secs "$t0" "$(now)")
  ROTCPU=$(awk -v a="$c0" -v b="$(pidcpu "$mountpid")" 'BEGIN { printf "%.2f", b - a }')
  KEY[many]=$NEWKEY
}
# pidcpu PID: CPU seconds (user + system) PID has used so far.
pidcpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# The machine is a VM: when its host runs other guests, /proc/stat's steal
# time rises, and the reader slows by as much (steal of 35 % of the CPU
# time over 5 s took it from 86 to 24 MiB/s). A window with more than
# maxsteal per cent of steal says more about the host than about snapcrypt.
maxsteal=2
# cputicks: "STEAL TOTAL" ticks of all CPUs so far (/proc/stat).
cputicks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat; }
# stealpct "S0 T0" "S1 T1": steal between the two, in per cent of all CPU time.
stealpct() { awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.1f", (t > 0 ? 100 * (y[1] - x[1]) / t : 0) }'; }
# reader SECONDS|rotate|cli: runs the reader for SECONDS, or around one
# rotation through .ctl/rotate, or around one `snapcrypt rotate` of the
# mounted repository (after which the mount lacks the current key: last);
# sets RATE (MiB/s), FILES (files/s), ERRS, ROT (s), STEAL (per cent).
reader() {
  local out c0
  rm -f "$W/ready"
  "$tool" read -dir "$mnt/snapshots/latest" -ready "$W/ready" >"$W/read.out" 2>"$W/read.err" &
  readpid=$!
  for _ in $(seq 600); do [ -e "$W/ready" ] && break; kill -0 "$readpid" 2>/dev/null || break; sleep 0.05; done
  [ -e "$W/ready" ] || { cat "$W/read.err" >&2; die "reader did not start"; }
  ROT=-
  c0=$(cputicks)
  case $1 in
    rotate)
      # Rotations through .ctl/rotate, one after another, until the window
      # has lasted as long as an idle one ($idle s). One rotation of
      # 100,000 DEKs takes about 2 s, and a reader's rate over 2 s says
      # little: an idle reader's 2-s windows ran at 64-108 MiB/s where its
      # 10-s ones ran at 90-92. ROT is their mean, NROT their number.
      local t0 n=0 sum=0
      t0=$(now)
      while :; do
        ctlrot
        n=$((n + 1)) sum=$(awk -v a="$sum" -v b="$ROT" 'BEGIN { print a + b }')
        awk -v a="$t0" -v b="$(now)" -v m="$idle" 'BEGIN { exit !((b - a) / 1e9 >= m) }' && break
      done
      ROT=$(awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.3f", s / n }') NROT=$n
      ;;
    cli)
      local t0
      newkey
      t0=$(now)
      "$bin" rotate -r "${REPO[many]}" -k "file:${KEY[many]}" --new-key "file:$NEWKEY" >"$W/rotate.log" 2>&1 &
      local rp=$!
      while kill -0 "$rp" 2>/dev/null; do pollstate; sleep "$pollgap"; done
      wait "$rp" || { cat "$W/rotate.log" >&2; die "rotate of the mounted repository failed"; }
      ROT=$(secs "$t0" "$(now)")
      KEY[many]=$NEWKEY
      ;;
    *) observe "$1" ;;
  esac
  kill "$readpid"
  STEAL=$(stealpct "$c0" "$(cputicks)")
  wait "$readpid" || { cat "$W/read.err" >&2; die "reader failed"; }
  readpid=
  out=$(cat "$W/read.out")
  # read: BYTES bytes FILES files ERRS errors SECS s MIBS MiB/s FPS files/s
  RATE=$(echo "$out" | awk '{ print $10 }')
  FILES=$(echo "$out" | awk '{ print $12 }')
  ERRS=$(echo "$out" | awk '{ print $6 }')
}
IDLE= DURING= RATIOS= CLEAN= STEALS= ROTS= NROTS= PACES= ERRS_ALL=0 FILES_IDLE= FILES_DURING= dskip= ROT_NOREAD= CLI_RATIO= CLI_ROT=
if has d; then
# The first rotation through the mount finds single objects, the later ones
# DEK packs.
manyrepo many "$W/repo-many"
dmany=$(deks many)
mkdir -p "$mnt"
mounted "$mnt" && die "$mnt is still mounted"
"$bin" mount -r "${REPO[many]}" -k "file:${KEY[many]}" "$mnt" >"$W/mount.log" 2>&1 &
mountpid=$!
for _ in $(seq 1200); do
  [ -e "$mnt/snapshots/latest" ] && break
  kill -0 "$mountpid" 2>/dev/null || { cat "$W/mount.log" >&2; die "mount exited"; }
  sleep 0.05
done
[ -e "$mnt/snapshots/latest" ] || die "mount not ready after 60 s"
if [ ! -e "$mnt/.ctl/rotate" ]; then
  dskip="the mount has no .ctl/rotate"
  say "(d) skipped: $dskip"
else
  say "(d) reader: warm-up"
  reader 5
  reader "$idle"
  prev=$RATE prevsteal=$STEAL IDLE=$RATE FILES_IDLE=$FILES ERRS_ALL=$((ERRS_ALL + ERRS)) STEALS="$STEAL"
  # Runs until dreps of them had no more than maxsteal per cent of steal
  # in their three windows (clean), or 2 * dreps runs.
  rep=0 nclean=0
  while ((nclean < dreps && rep < 2 * dreps)); do
    rep=$((rep + 1))
    say "(d) reader during a rotation of $manydeks DEKs through .ctl/rotate, run $rep ($nclean of $dreps clean so far)"
    reader rotate
    during=$RATE dsteal=$STEAL
    DURING+=" $during" FILES_DURING+=" $FILES" ROTS+=" $ROT" NROTS+=" $NROT" PACES+=" $LASTPACE" ERRS_ALL=$((ERRS_ALL + ERRS))
    reader "$idle"
    IDLE+=" $RATE" FILES_IDLE+=" $FILES" ERRS_ALL=$((ERRS_ALL + ERRS)) STEALS+=" $dsteal $STEAL"
    r=$(awk -v d="$during" -v a="$prev" -v b="$RATE" 'BEGIN { printf "%.3f", d / ((a + b) / 2) }')
    RATIOS+=" $r"
    if awk -v a="$prevsteal" -v b="$dsteal" -v c="$STEAL" -v m="$maxsteal" 'BEGIN { exit !(a <= m && b <= m && c <= m) }'; then
      CLEAN+=" $r" nclean=$((nclean + 1))
    fi
    prev=$RATE prevsteal=$STEAL
  done
  say "(d) diagnostic: rotation through .ctl/rotate with no reader"
  ctlrot
  ROT_NOREAD=$ROT ROTCPU_NOREAD=$ROTCPU
  say "(d) diagnostic: reader during snapcrypt rotate (another process)"
  reader cli
  during=$RATE CLI_ROT=$ROT ERRS_ALL=$((ERRS_ALL + ERRS))
  reader "$idle"
  ERRS_ALL=$((ERRS_ALL + ERRS))
  CLI_RATIO=$(awk -v d="$during" -v a="$prev" -v b="$RATE" 'BEGIN { printf "%.3f", d / ((a + b) / 2) }')
fi
unmount
fi

# --- table --------------------------------------------------------------------
# shellcheck disable=SC2086
{
  mt_many=$(median ${T[many]}) mt_manywall=$(median ${T[manywall]}) mt_manypk=$(median ${T[manypk]}) mt_shm=$(median ${T[shm]}) mt_fn=$(median ${T[fullnat]}) mt_rc=$(median ${T[resticcopy]})
  mt_small=$(median ${T[small]}) mt_full=$(median ${T[full]})
}
rate_many=$(per "${N[many]:-0}" "$mt_many") rate_manypk=$(per "${N[manypk]:-0}" "$mt_manypk") rate_shm=$(per "${N[shm]:-0}" "$mt_shm")
fs_many=$(df --output=fstype "$W" | tail -1)
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }
echo "## rotation (median of $reps runs; ratios: median of per-run ratios; snapcrypt at $rev)"
echo
row "figure" "snapcrypt" "restic" "ratio" "goal"
row "---" "---:" "---:" "---:" "---"
if has a; then
  row "(a) rotate ${N[many]} DEKs (single objects), local store ($fs_many, $W), cold: to the old prefix deleted, s" "$mt_many" "-" "-" ""
  row "(a) rotation rate, DEKs/s" "$rate_many" "-" "-" "≥ 20,000$(verdict "$(between "$rate_many" 20000 1e12)")"
  row "(a) the same, wall time of the rotate process (also freeing the old files' space), s" "$mt_manywall" "-" "-" ""
  row "(a) next rotation of that repository (DEKs in packs), to the old prefix deleted, s (DEKs/s)" "$mt_manypk ($rate_manypk/s)" "-" "-" "≥ 20,000$(verdict "$(between "$rate_manypk" 20000 1e12)")"
  # shellcheck disable=SC2086
  {
    cpu_many=$(awk -v c="$(median ${C[many]})" -v n="${N[many]}" 'BEGIN { printf "%.0f", c * 1e6 / n }')
    cpu_shm=$(awk -v c="$(median ${C[shm]})" -v n="${N[shm]}" 'BEGIN { printf "%.0f", c * 1e6 / n }')
  }
  row "(a) CPU of the rotate process per DEK (user + system), µs" "$cpu_many" "-" "-" ""
  row "(a) diagnostic: the same on tmpfs, s (DEKs/s; CPU µs per DEK)" "$mt_shm ($rate_shm/s; $cpu_shm µs)" "-" "-" ""
fi
if has b; then
  r=$(pairmed "${T[full]}" "${T[small]}")
  row "(b) rotate ${N[small]} DEKs, $((small / 1048576)) MiB repository, s (median of $breps)" "$mt_small" "-" "-" ""
  row "(b) rotate ${N[full]} DEKs, $((size / 1048576)) MiB repository, s" "$mt_full" "-" "$r" "0.90 to 1.10$(verdict "$(between "$r" 0.9 1.1)")"
  # shellcheck disable=SC2086
  row "(b) diagnostic: CPU of the rotate process (user + system), small / large, s" "$(median ${C[small]}) / $(median ${C[full]})" "-" "$(pairmed "${C[full]}" "${C[small]}")" ""
fi
if has c; then
  row "(c) replace the master key of $((size / 1048576)) MiB: snapcrypt rotate (${N[fullnat]} DEKs) vs restic copy, s" "$mt_fn" "$mt_rc" "$(pairmed "${T[fullnat]}" "${T[resticcopy]}")" "report"
  if has b; then row "(c) the same with ${N[full]} DEKs, s" "$mt_full" "$mt_rc" "$(ratio "$mt_full" "$mt_rc")" "report"; fi
fi
if has d && [ -n "$dskip" ]; then
  row "(d) reader during rotation / idle" "skipped: $dskip" "-" "-" "≥ 0.9"
elif has d; then
  # shellcheck disable=SC2086
  {
    mi=$(median $IDLE) md=$(median $DURING) mr=$(median $RATIOS) mrot=$(median $ROTS)
    fi_=$(median $FILES_IDLE) fd=$(median $FILES_DURING)
  }
  row "(d) reader over the tree snapshot, idle, MiB/s (files/s)" "$(f1 "$mi") ($(f0 "$fi_"))" "-" "-" ""
  row "(d) the same during rotations via .ctl/rotate (one after another for $idle s or more), MiB/s (files/s)" "$(f1 "$md") ($(f0 "$fd"))" "-" "-" ""
  # shellcheck disable=SC2086
  {
    nclean=$(wc -w <<<"$CLEAN")
    mc=$(median $CLEAN)
  }
  if ((nclean >= 3)); then
    row "(d) reader during rotation / idle, runs with at most $maxsteal % steal (median of $nclean)" "$mc" "-" "-" "≥ 0.9$(verdict "$(between "$mc" 0.9 1e12)")"
    row "(d) the same, all runs (median of $(wc -w <<<"$RATIOS"))" "$mr" "-" "-" ""
  else
    row "(d) reader during rotation / idle, all runs (median of $(wc -w <<<"$RATIOS"); only $nclean had at most $maxsteal % steal)" "$mr" "-" "-" "≥ 0.9$(verdict "$(between "$mr" 0.9 1e12)")"
  fi
  row "(d) rotation of $dmany DEKs through the mount while reading, s (DEKs/s)" "$mrot ($(per "$dmany" "$mrot")/s)" "-" "-" ""
  row "(d) read errors during the reader loops" "$ERRS_ALL" "-" "-" "0$(verdict "$([ "$ERRS_ALL" = 0 ] && echo 1 || echo 0)")"
  row "(d) diagnostic: the same rotation through the mount, no reader, s (DEKs/s; mount CPU µs per DEK)" "$ROT_NOREAD ($(per "$dmany" "$ROT_NOREAD")/s; $(awk -v c="$ROTCPU_NOREAD" -v n="$dmany" 'BEGIN { printf "%.0f", c * 1e6 / n }') µs)" "-" "-" ""
  row "(d) diagnostic: reader during \`snapcrypt rotate\` (other process) / idle; rotation s" "$CLI_RATIO; $CLI_ROT" "-" "-" ""
fi
echo
echo "load average (1, 5, 15 min) at the start ($start): $load0; at the end ($(date -u +%H:%M:%SZ)): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "all runs (s): rotate many [${T[many]} ] wall [${T[manywall]} ] from packs [${T[manypk]} ] tmpfs [${T[shm]} ] full, natural DEKs [${T[fullnat]} ] restic copy [${T[resticcopy]} ] small [${T[small]} ] full [${T[full]} ]; CPU s: many [${C[many]} ] tmpfs [${C[shm]} ] small [${C[small]} ] full [${C[full]} ]"
if has d && [ -z "$dskip" ]; then echo "reader MiB/s: idle [$IDLE ] during [$DURING ] ratios [$RATIOS ] (clean [$CLEAN ]) rotation s (mean of each window's) [$ROTS ], rotations per window [$NROTS ]; steal % of each window, idle first [ $STEALS ]; pacer factor/reader share last seen in each [$PACES ]"; fi
echo
