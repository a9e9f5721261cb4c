# shellcheck shell=bash
# Shared by scripts/lib/node.sh and scripts/lib/cluster.sh (sourced, not run): what bringing up
# a simulated node needs whether it runs alone or in a cluster.
#
#   wait_http URL                  until URL answers 2xx (30 s), else fails naming it
#   render_config OUT RUNTIME ...  demo/rollgate.toml.in filled for one node (see `fill`)
#   LOOPBACK_RUNTIME               the [runtime] block of a loopback localnet: rollgate-sim's
#                                  controller, whose directory comes from $ROLLGATE_SIM_DIR
#
# `fill` reads the node's ports, databases and state directory from the caller's variables
# STATE, OPERATOR_PORT, KYC_PORT, CHAIN_PORT, DEPLOYMENT_PORT, PCCS_PORT, OPERATOR_DB, KYC_DB,
# and ROLLGATE_DEMO_WINDOW / ROLLGATE_DEMO_BAKE (default 5s / 6s).

wait_http() {
  for _ in $(seq 150); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "timed out waiting for $1" >&2
  return 1
}

# fill MODE APP_CONFIG RUNTIME_ENV CHAIN_URL DEPLOYMENT_URL PCCS_PIN AESM_SOCKET
fill() {
  sed -e "s|@MODE@|$1|g" -e "s|@APP_CONFIG@|$2|g" -e "s|@OWNER@|$(id -un)|g" -e "s|@STATE_DIR@|$STATE|g" \
      -e "s|@RUNTIME_ENV@|$3|g" -e "s|@CHAIN_URL@|$4|g" -e "s|@DEPLOYMENT_URL@|$5|g" \
      -e "s|@CHAIN_PORT@|$CHAIN_PORT|g" -e "s|@DEPLOYMENT_PORT@|$DEPLOYMENT_PORT|g" -e "s|@PCCS_PORT@|$PCCS_PORT|g" \
      -e "s|@OPERATOR_PORT@|$OPERATOR_PORT|g" -e "s|@KYC_PORT@|$KYC_PORT|g" -e "s|@PCCS_PIN@|$6|g" \
      -e "s|@AESM_SOCKET@|$7|g" -e "s|@OPERATOR_DB@|$OPERATOR_DB|g" -e "s|@KYC_DB@|$KYC_DB|g" \
      -e "s|@WINDOW@|${ROLLGATE_DEMO_WINDOW:-5s}|g" -e "s|@BAKE@|${ROLLGATE_DEMO_BAKE:-6s}|g" \
      demo/rollgate.toml.in
}

# render_config OUT RUNTIME <the seven arguments of fill>
render_config() {
  local out=$1 runtime=$2
  shift 2
  fill "$@" > "$out.tmp"
  python3 - "$out.tmp" "$out" "$runtime" <<'PY'
import sys
src, dst, runtime = sys.argv[1:4]
open(dst, "w").write(open(src).read().replace("@RUNTIME@", runtime))
PY
  rm -f "$out.tmp"
}

# shellcheck disable=SC2016 # expanded by the command driver's shell, not here
# shellcheck disable=SC2034 # used by the scripts that source this file
LOOPBACK_RUNTIME='[runtime]
driver = "command"

# rollgate-sim'"'"'s localnet controller reads ROLLGATE_LAYER, ROLLGATE_VALUE, ROLLGATE_COMPONENTS,
# and ROLLGATE_SIM_DIR, which a command gets only when `env` lists it.
[runtime.command]
env = ["ROLLGATE_SIM_DIR"]
current = "rollgate-sim localnet current"
apply = "rollgate-sim localnet set"
restart = "rollgate-sim localnet restart"
stop = "rollgate-sim localnet stop"
start = "rollgate-sim localnet start"
logs = "awk -v s=\"$ROLLGATE_SINCE\" '"'"'substr($1, 1, 23) >= substr(s, 1, 23)'"'"' \"$ROLLGATE_SIM_DIR/logs/$ROLLGATE_COMPONENT.log\""
timeout = "60s"'
