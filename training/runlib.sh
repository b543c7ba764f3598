# shellcheck shell=bash
# Sourced by training/experiments.sh, from the project root, with DATA and RUNS set: how
# a recipe starts a run, and how runs longer than a session are carried across sessions.
# The recipes themselves, the log of every run, stay in experiments.sh.

run() {
  local out=$1; shift
  local stop=()
  if [ -n "${STOP_BY:-}" ]; then stop=(--stop-by "$STOP_BY"); fi
  # Camera copies are kept by key in one directory, so runs of the same faces, fraction,
  # seed and framing ((t), (z), (y), ...) detect them once between them.
  local copies=()
  case " $* ${EXTRA:-} " in
    *" --camera-copies "*) copies=(--copies-cache "$RUNS/camera-copies") ;;
  esac
  echo "=== $(date -u +%FT%TZ) start $out $*"
  # shellcheck disable=SC2086  # PIN (a CPU pinning prefix) and EXTRA are word lists
  ${PIN:-} .venv/bin/moodcam-train fit --data "$DATA" --out "$RUNS/$out" --resume "$@" \
    "${copies[@]}" "${stop[@]}" ${EXTRA:-}
  local rc=$?  # before the echo's $(date) resets $?
  echo "=== $(date -u +%FT%TZ) end $out exit $rc"
}

# Run directories do not outlive a session here; only commits do. So a run longer than a
# session is stopped, its checkpoint (weights, optimizer state, run state: 4.8 MB at width
# 2) copied into training/carry/RUN with carry-out and committed, and the next session's
# carry_in puts it back, after which --resume goes on from the epoch it reached. Stop the
# run first: its three files are written one after another at each epoch's end. A file
# past CARRY_PART_BYTES (a width-3 checkpoint is 5 MB) is carried in parts FILE.part-NNN,
# so no tracked file outgrows what the project keeps; carry_in joins them back, byte for byte.
CARRY=${CARRY:-training/carry}
CARRY_PART_BYTES=${CARRY_PART_BYTES:-2500000}
carry_file() {  # carry_file SRC DIR: copy SRC into DIR, in parts when it is large
  local name; name=$(basename "$1")
  rm -f "$2/$name" "$2/$name".part-*
  if [ "$(stat -c %s "$1")" -gt "$CARRY_PART_BYTES" ]; then
    split -b "$CARRY_PART_BYTES" -d -a 3 "$1" "$2/$name.part-"
  else
    cp "$1" "$2/"
  fi
}
carry_out() {
  local r src
  for r in "$@"; do
    src=$RUNS/$r/checkpoint
    if [ ! -f "$src/state.json" ] || [ ! -f "$src/last.keras" ]; then
      echo "carry-out: $src holds no checkpoint" >&2; return 1
    fi
    mkdir -p "$CARRY/$r"
    rm -f "$CARRY/$r/best.weights.h5" "$CARRY/$r/best.weights.h5".part-*
    cp "$src/state.json" "$CARRY/$r/"  # never in parts: it marks a carried run
    carry_file "$src/last.keras" "$CARRY/$r" || return 1
    if [ -f "$src/best.weights.h5" ]; then
      carry_file "$src/best.weights.h5" "$CARRY/$r" || return 1
    fi
    echo "carry-out: $r at epoch $(epoch_of "$CARRY/$r/state.json") -> $CARRY/$r"
  done
}
progress() {  # progress STATE.json: "EPOCH PLANNED" from a run state, "-1 0" without one
  python3 -c 'import json,sys
try: s=json.load(open(sys.argv[1]))
except OSError: s={"epoch":-1}
print(s["epoch"], s.get("options",{}).get("epochs",0))' "$1"
}
epoch_of() { local e n; read -r e n < <(progress "$1"); echo "$e"; }
finished() {  # finished RUN: its checkpoint reached the epochs it was started for
  local e n; read -r e n < <(progress "$RUNS/$1/checkpoint/state.json")
  [ "$n" -gt 0 ] && [ "$e" -ge "$n" ]
}
carry_in() {
  local d r dst f
  for d in "$CARRY"/*/; do
    [ -f "$d/state.json" ] || continue
    r=$(basename "$d"); dst=$RUNS/$r/checkpoint
    # A run directory that got further (this session's own) is never rolled back.
    if [ "$(epoch_of "$dst/state.json")" -ge "$(epoch_of "$d/state.json")" ]; then continue; fi
    mkdir -p "$dst"
    rm -f "$dst/best.weights.h5"
    for f in "$d"*; do
      case $f in
        *.part-000) cat "${f%-000}"-* > "$dst/$(basename "${f%.part-000}")" ;;
        *.part-*) ;;
        *) cp "$f" "$dst/" ;;
      esac
    done
    echo "carry-in: $r at epoch $(epoch_of "$dst/state.json")"
  done
}

exported() { [ -f "$1/manifest.json" ]; }  # exported RUN_DIR: the run wrote its model

# judge RUN: the figures a run is judged by, all on validation, written beside it once
# (judge-crops.json, judge-camera.json, judge-rule.json), so that a run finishing in a
# session nobody watches is judged there too; read them with the README's (t) rows.
judge() {
  local d=$RUNS/$1 t=.venv/bin/moodcam-train
  exported "$d" || { echo "judge: $d has no exported model" >&2; return 1; }
  once "$d/judge-crops.json" $t evaluate --model "$d" --data "$DATA" --split validation \
    --json || return 1
  once "$d/judge-camera.json" $t evaluate --model "$d" --data "$DATA" --split validation \
    --camera --frame-seeds 0,1,2 --json || return 1
  once "$d/judge-rule.json" $t rule --model "$d" --data "$DATA" || return 1
  echo "judge: $1 -> $d/judge-*.json"
}
once() {  # once FILE CMD...: CMD's output into FILE, unless an earlier call wrote it
  local f=$1; shift
  [ -s "$f" ] && return 0
  "$@" > "$f.tmp" && mv "$f.tmp" "$f"
}
