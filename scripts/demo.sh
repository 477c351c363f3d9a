#!/usr/bin/env bash
# make demo: a demo key and repository, two snapshots of a sample tree with a
# change between them, then the repository mounted read-only (Ctrl-C ends it).
# DEMO_DIR (default /tmp/snapcrypt-demo) holds everything; it is made anew.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/bin/snapcrypt"
demo="${DEMO_DIR:-/tmp/snapcrypt-demo}"

if grep -qs " $demo/mnt " /proc/mounts; then fusermount3 -u "$demo/mnt" || umount "$demo/mnt"; fi
rm -rf "$demo"
mkdir -p "$demo/sample"
# The sample tree: this project's own sources and docs.
cp -a cmd repo keys fs docs README.md "$demo/sample/" 2>/dev/null || true
export SNAPCRYPT_REPO="$demo/repo" SNAPCRYPT_KEY="file:$demo/demo.key"

set -x
"$bin" keygen "$demo/demo.key"
"$bin" init
"$bin" snapshot --name first --tag demo "$demo/sample"
echo "a change made after the first snapshot" >> "$demo/sample/README.md"
mkdir -p "$demo/sample/added" && date > "$demo/sample/added/now.txt"
"$bin" snapshot --name second --tag demo "$demo/sample"
"$bin" snapshots
"$bin" status
"$bin" check
set +x

if "$bin" mount --help >/dev/null 2>&1; then
  mkdir -p "$demo/mnt"
  "$bin" keygen "$demo/demo2.key" >/dev/null
  echo
  echo "Mounting at $demo/mnt. In another terminal try:"
  echo "  ls $demo/mnt/snapshots; diff -r $demo/mnt/snapshots/first $demo/mnt/snapshots/second"
  echo "  cat $demo/mnt/.ctl/status"
  echo "  echo file:$demo/demo2.key > $demo/mnt/.ctl/rotate   # rotate the master key online"
  echo "Press Ctrl-C to unmount."
  exec "$bin" mount "$demo/mnt"
else
  "$bin" restore latest "$demo/restored"
  diff -r "$demo/sample" "$demo/restored" && echo "restored tree matches the sample"
fi
