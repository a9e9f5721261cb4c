# shellcheck shell=bash
# Shared by scripts/demo-fleet and bench/fleet (sourced, not run): a loopback cluster of N
# simulated operator nodes for `rollgate fleet`, and everything around it.
#
#   cluster_up N     - starts Postgres and Redis (scripts/services) — already done on sourcing,
#                      with the build of rollgate and rollgate-sim;
#                    - one etcd on free loopback ports with a data directory of its own;
#                    - the sim's Raft cluster (`rollgate-sim cluster init --voters 1,…,N`) and one
#                      localnet per node in cluster mode (`localnet up --node-id I --cluster-file`),
#                      each on its own ports, databases and Redis prefix;
#                    - one rollgate.toml per node (demo/rollgate.toml.in plus [fleet]) and one
#                      state directory;
#                    - one `rollgate fleet agent` per node in the background, logging to
#                      $CLUSTER/nodeI/agent.log; returns when every agent is registered in etcd.
#   node_rollgate I ARGS…   rollgate as node I (its configuration and its localnet)
#   fleet ARGS…             `rollgate fleet ARGS…` with node 1's configuration (any node's does)
#   node_version I          node I's operator version, from its own /v2/status
#
# Everything is removed on exit (an EXIT trap: agents stopped with SIGTERM, localnets down,
# etcd killed, databases dropped, the directory deleted). Set before sourcing, all optional:
#   ROLLGATE_PROFILE             debug (default) or release: which build to run
#   ROLLGATE_DEMO_WINDOW         each node's progression window (default 3s)
#   ROLLGATE_DEMO_BAKE           each node's bake period (default 0s)
#   ROLLGATE_FLEET_STABILIZATION [fleet] stabilization (default 5s)
#   ROLLGATE_FLEET_SOAK          [fleet] canary_soak (default 0s)
# After cluster_up: CLUSTER (the directory), ETCD_URL, FLEET_CLUSTER (the cluster name),
# NODES (how many), OP_PORTS[I] (node I's operator port), ROLLGATE_CONFIG (node 1's).
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
ROOT=$PWD
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

export ROLLGATE_DEMO_WINDOW="${ROLLGATE_DEMO_WINDOW:-3s}" ROLLGATE_DEMO_BAKE="${ROLLGATE_DEMO_BAKE:-0s}"
ROLLGATE_FLEET_STABILIZATION="${ROLLGATE_FLEET_STABILIZATION:-5s}"
ROLLGATE_FLEET_SOAK="${ROLLGATE_FLEET_SOAK:-0s}"
PROFILE="${ROLLGATE_PROFILE:-debug}"

eval "$(scripts/services)"
export ROLLGATE_TEST_DATABASE_URL ROLLGATE_TEST_REDIS_URL
echo "==> building rollgate and rollgate-sim ($PROFILE)" >&2
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p rollgate-cli -p rollgate-sim
else
  cargo build -q -p rollgate-cli -p rollgate-sim
fi
export PATH="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE:$PATH"

CLUSTER="$(mktemp -d /tmp/rollgate-fleet.XXXXXX)"
FLEET_CLUSTER="demo-$$"
NODES=0
OP_PORTS=()
AGENT_PIDS=()
ETCD_PID=
PSQL=(psql -X -q "$ROLLGATE_TEST_DATABASE_URL")

cluster_down() {
  set +e
  echo "==> cleaning up the cluster" >&2
  local pid i
  for pid in "${AGENT_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${AGENT_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  for ((i = 1; i <= NODES; i++)); do
    rollgate-sim localnet down --dir "$CLUSTER/node$i/localnet" >/dev/null 2>&1
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS fleet$$_op$i" -c "DROP DATABASE IF EXISTS fleet$$_kyc$i" >/dev/null 2>&1
  done
  if [ -n "$ETCD_PID" ]; then kill -KILL "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null; fi
  rm -rf "$CLUSTER"
}
trap cluster_down EXIT

# free_ports N: N distinct free loopback ports (all held until every one is chosen).
free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# rollgate as node I: its configuration, and its localnet for the command driver.
node_rollgate() {
  local i=$1
  shift
  ROLLGATE_SIM_DIR="$CLUSTER/node$i/localnet" rollgate --config "$CLUSTER/node$i/rollgate.toml" "$@"
}

fleet() {
  node_rollgate 1 fleet "$@"
}

node_version() {
  curl -fsS "http://127.0.0.1:${OP_PORTS[$1]}/v2/status" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])' 2>/dev/null || echo down
}

# start_agent I: node I's `rollgate fleet agent`, in the background, appending to its log.
start_agent() {
  local i=$1
  # exec: $! is the agent itself, so the trap's SIGTERM reaches it (and it exits 0).
  (
    export ROLLGATE_SIM_DIR="$CLUSTER/node$i/localnet"
    exec rollgate --config "$CLUSTER/node$i/rollgate.toml" fleet agent
  ) >>"$CLUSTER/node$i/agent.log" 2>&1 &
  AGENT_PIDS[i]=$!
}

# wait_agents N: until N agents are alive and healthy in `fleet status` (60 s).
wait_agents() {
  for _ in $(seq 300); do
    fleet status --format json 2>/dev/null | python3 -c '
import json, sys
agents = json.load(sys.stdin)["agents"]
sys.exit(0 if sum(1 for a in agents if a["alive"] and a["healthy"]) == int(sys.argv[1]) else 1)' "$1" \
      && return 0
    sleep 0.2
  done
  echo "the $1 agents did not all register healthy within 60s; their logs are in $CLUSTER/node*/agent.log" >&2
  fleet status >&2 || true
  return 1
}

cluster_up() {
  local n=$1 i ports voters
  NODES=$n
  read -r -a ports <<<"$(free_ports $((2 + 5 * n)))"
  ETCD_URL="http://127.0.0.1:${ports[0]}"
  local peer="http://127.0.0.1:${ports[1]}"
  echo "==> etcd on $ETCD_URL" >&2
  mkdir -p "$CLUSTER/etcd"
  etcd --name fleet --data-dir "$CLUSTER/etcd/data" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "fleet=$peer" \
    >"$CLUSTER/etcd/etcd.log" 2>&1 &
  ETCD_PID=$!
  for _ in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" --dial-timeout 1s endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  ETCDCTL_API=3 etcdctl --endpoints "$ETCD_URL" endpoint health >/dev/null 2>&1 \
    || { echo "etcd did not answer on $ETCD_URL; see $CLUSTER/etcd/etcd.log" >&2; return 1; }

  voters=$(seq -s, 1 "$n")
  rollgate-sim cluster init --file "$CLUSTER/raft.json" --voters "$voters" >/dev/null
  for ((i = 1; i <= n; i++)); do
    local base=$((2 + 5 * (i - 1)))
    OPERATOR_PORT=${ports[base]} KYC_PORT=${ports[base + 1]} CHAIN_PORT=${ports[base + 2]}
    DEPLOYMENT_PORT=${ports[base + 3]} PCCS_PORT=${ports[base + 4]}
    OPERATOR_DB="fleet$$_op$i" KYC_DB="fleet$$_kyc$i" STATE="$CLUSTER/node$i/state"
    OP_PORTS[i]=$OPERATOR_PORT
    local net="$CLUSTER/node$i/localnet"
    mkdir -p "$STATE"
    echo "==> node $i: localnet in cluster mode, operator on 127.0.0.1:$OPERATOR_PORT" >&2
    rollgate-sim localnet up --dir "$net" --database-url "$ROLLGATE_TEST_DATABASE_URL" \
      --redis-url "$ROLLGATE_TEST_REDIS_URL" --operator-database "$OPERATOR_DB" --kyc-database "$KYC_DB" \
      --redis-prefix "fleet$$n$i" --operator-port "$OPERATOR_PORT" --kyc-port "$KYC_PORT" \
      --chain-port "$CHAIN_PORT" --deployment-port "$DEPLOYMENT_PORT" --pccs-port "$PCCS_PORT" \
      --node-id "$i" --cluster-file "$CLUSTER/raft.json" >"$CLUSTER/node$i/localnet-up.log" 2>&1 \
      || { cat "$CLUSTER/node$i/localnet-up.log" >&2; return 1; }
    local config="$CLUSTER/node$i/rollgate.toml"
    render_config "$config" "$LOOPBACK_RUNTIME" localnet.loopback "$net/app_config" "$net/runtime.env" \
      "http://127.0.0.1:$CHAIN_PORT" "http://127.0.0.1:$DEPLOYMENT_PORT" \
      "$(cat "$net/pccs/cert.sha256")" "$net/aesm/aesm.socket"
    sed -i "s|^name = \"demo-node\"|name = \"node$i\"|" "$config"
    cat >>"$config" <<EOF

[fleet]
etcd = ["$ETCD_URL"]
cluster = "$FLEET_CLUSTER"
leader_pointer = "/raftMetrics/leaderId"
stabilization = "$ROLLGATE_FLEET_STABILIZATION"
canary_soak = "$ROLLGATE_FLEET_SOAK"
EOF
  done
  export ROLLGATE_CONFIG="$CLUSTER/node1/rollgate.toml"
  echo "==> one rollgate fleet agent per node (logs: $CLUSTER/node*/agent.log)" >&2
  for ((i = 1; i <= n; i++)); do start_agent "$i"; done
  wait_agents "$n"
}
