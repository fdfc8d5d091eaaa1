#!/usr/bin/env bash
# The edge built with profile-guided optimisation (PGO): the `dist` profile (release +
# whole-program LTO) optimised with a profile of the edge at work. Not the shipped build
# (Dockerfile.edge builds `dist` alone): in the side-by-side benchmark this build used 8 % less CPU
# per call but missed the fixed-rate p99 line in two runs of five (docs/benchmarks.md). Compare it
# there with `loadtest/bench/side_by_side.sh --edge-bin "$(scripts/build-edge-pgo.sh | tail -n 1)"`.
#
#   scripts/build-edge-pgo.sh            # prints the path of the built edge on its last line
#
# Steps, all on loopback:
#   1. the control plane and the training workload (loadtest/src/bin/pgo_workload.rs), release;
#   2. the edge instrumented (`-Cprofile-generate`), `dist` profile, in target/pgo-generate;
#   3. the workload run against it: chat (plain and streamed) and embeddings on an event with caps,
#      responses, the Foundry Agent Service, refusals; the edge writes its profile when stopped;
#   4. llvm-profdata merges the profile into target/pgo/edge.profdata;
#   5. the edge built with it (`-Cprofile-use`), `dist` profile, in target/pgo-use.
# Steps 3 and 4 are skipped while the profile is newer than the instrumented edge and the workload
# (neither changed since), and cargo skips what is up to date: a second run takes seconds.
#
# Needs llvm-profdata of the LLVM version rustc was built with: $LLVM_PROFDATA, else rustup's
# `llvm-tools` component, else `llvm-profdata-<major>` (Debian's llvm-<major> package, installed
# with apt-get when absent and run as root).
# Environment: CARGO (default cargo), CHAT_CALLS (the workload's size, default 20000).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
CARGO=${CARGO:-cargo}
CHAT_CALLS=${CHAT_CALLS:-20000}
log() { echo "build-edge-pgo: $*" >&2; }
die() { log "$*"; exit 1; }

host=$(rustc -vV | sed -n 's/^host: //p')
llvm_major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
[[ -n $llvm_major ]] || die "rustc -vV names no LLVM version"
profdata=${LLVM_PROFDATA:-}
if [[ -z $profdata ]]; then
  tools="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
  if [[ -x $tools ]]; then
    profdata=$tools
  else
    if ! command -v "llvm-profdata-$llvm_major" >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      log "installing llvm-$llvm_major from the distribution's packages (for llvm-profdata-$llvm_major)"
      apt-get install -y "llvm-$llvm_major" >&2 || log "apt-get install llvm-$llvm_major failed"
    fi
    command -v "llvm-profdata-$llvm_major" >/dev/null \
      || die "no llvm-profdata for LLVM $llvm_major: 'rustup component add llvm-tools', or 'apt-get install llvm-$llvm_major', or set LLVM_PROFDATA"
    profdata=$(command -v "llvm-profdata-$llvm_major")
  fi
fi
# A profile written by a newer LLVM than rustc's cannot be read by rustc.
version=$("$profdata" --version)
[[ $version == *"LLVM version $llvm_major."* ]] || die "$profdata is not LLVM $llvm_major, the version of rustc: $version"

GEN_DIR=$REPO/target/pgo-generate
USE_DIR=$REPO/target/pgo-use
PGO_DIR=$REPO/target/pgo
PROFILE=$PGO_DIR/edge.profdata
mkdir -p "$PGO_DIR"

log "1/5 control plane and training workload (release)"
"$CARGO" build --release --locked -p aiproxy-control-plane -p aiproxy-loadtest --bin aiproxy-control-plane --bin aiproxy-pgo-workload >&2

log "2/5 instrumented edge (dist, $GEN_DIR)"
# Build scripts are instrumented too and write here while they run: this folder is never read.
RUSTFLAGS="-Cprofile-generate=$PGO_DIR/build-scripts" CARGO_TARGET_DIR=$GEN_DIR \
  "$CARGO" build --profile dist --locked -p aiproxy-edge >&2
instrumented=$GEN_DIR/dist/aiproxy-edge

workload=$REPO/target/release/aiproxy-pgo-workload
if [[ -s $PROFILE && $PROFILE -nt $instrumented && $PROFILE -nt $workload ]]; then
  log "3/5 4/5 profile up to date ($PROFILE)"
else
  log "3/5 training workload ($CHAT_CALLS chat calls and the rest)"
  rm -rf "$PGO_DIR/raw"
  AIPROXY_BIN_DIR=$REPO/target/release "$workload" \
    --edge "$instrumented" --profile-dir "$PGO_DIR/raw" --chat-calls "$CHAT_CALLS" >&2
  log "4/5 merge ($profdata)"
  "$profdata" merge -o "$PROFILE.tmp" "$PGO_DIR/raw"
  mv "$PROFILE.tmp" "$PROFILE"
fi

log "5/5 edge optimised with the profile (dist, $USE_DIR)"
# rustc lists the profile among each crate's inputs: a new profile rebuilds them all.
RUSTFLAGS="-Cprofile-use=$PROFILE -Cllvm-args=-pgo-warn-missing-function=false" CARGO_TARGET_DIR=$USE_DIR \
  "$CARGO" build --profile dist --locked -p aiproxy-edge >&2
echo "$USE_DIR/dist/aiproxy-edge"
