#!/bin/bash
# The npyz evaluation of issue 22 item 5 (see docs/development.md).
# Usage: scripts/npyz-eval/run.sh [PROBLEM_DIR]
# Builds the evaluator (release), writes the hostile files, and loads each
# test fixture and hostile file with l0's reader and with npyz, printing
# outcome, wall time and peak RSS; with PROBLEM_DIR (holding M.npz), loads
# that too (3 runs each).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
(cd "$here" && CARGO_TARGET_DIR="$root/target" cargo build --release -q) || exit 1
E="$root/target/release/npyz-eval"
H=${TMPDIR:-/tmp}/npyz-eval-hostile
"$E" gen "$H"
run() { # MODE FILE
  local out
  out=$(timeout 30 /usr/bin/time -f "%M" "$E" "$1" "$2" 2>/tmp/npyz-eval-rss.$$)
  local rc=$?
  local rss; rss=$(tail -1 /tmp/npyz-eval-rss.$$)
  [ $rc -eq 124 ] && out="TIMEOUT after 30 s"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && out="CRASH rc=$rc: $(head -c 300 /tmp/npyz-eval-rss.$$ | tr '\n' ' ')"
  printf '  %-9s %s [peak RSS %s MB]\n' "$1" "$out" "$((rss / 1024))"
}
for f in "$root"/tests/data/*.npz "$H"/*.npz; do
  echo "$(basename "$f")"
  run ours "$f"; run npyz "$f"
done
for f in "$root"/tests/data/*.npy "$H"/*.npy; do
  echo "$(basename "$f")"
  run ours-npy "$f"; run npyz-npy "$f"
done
if [ $# -ge 1 ]; then
  for i in 1 2 3; do
    echo "$1/M.npz run $i"
    run ours "$1/M.npz"; run npyz "$1/M.npz"
  done
fi
rm -f /tmp/npyz-eval-rss.$$
