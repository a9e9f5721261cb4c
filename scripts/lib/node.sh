# Shared by scripts/demo and bench/rollback (sourced, not run): brings up a simulated node for
# rollgate and writes its configuration.
#
#   - starts Postgres and Redis (scripts/services) and builds rollgate and rollgate-sim;
#   - brings up the simulated node: Docker Compose when a Docker engine answers (images built
#     locally by scripts/build-images), processes on loopback otherwise
#     (ROLLGATE_DEMO_MODE=compose|loopback forces one);
#   - exports ROLLGATE_CONFIG, sets MODE, GOOD and STALL (the good and the stalling operator
#     versions in this mode), and installs an EXIT trap that removes everything again.
#
# ROLLGATE_DEMO_BAKE sets the bake period (default 6s), ROLLGATE_DEMO_WINDOW the progression
# window (default 5s).
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh

eval "$(scripts/services)"
export ROLLGATE_TEST_DATABASE_URL ROLLGATE_TEST_REDIS_URL
echo "==> building rollgate and rollgate-sim" >&2
cargo build -q -p rollgate-cli -p rollgate-sim
export PATH="${CARGO_TARGET_DIR:-$ROOT/target}/debug:$PATH"

MODE="${ROLLGATE_DEMO_MODE:-auto}"
if [ "$MODE" = auto ]; then
  if docker info >/dev/null 2>&1 && { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }; then
    MODE=compose
  else
    MODE=loopback
  fi
fi

DEMO="$(mktemp -d /tmp/rollgate-demo.XXXXXX)"
mkdir -p "$DEMO/state"
STATE="$DEMO/state"
CONFIG="$DEMO/rollgate.toml"
PROJECT="rollgate-demo-$$"
OPERATOR_PORT=18080 KYC_PORT=18090 CHAIN_PORT=18545 DEPLOYMENT_PORT=14040 PCCS_PORT=18081
OPERATOR_DB="demo_node0_$$" KYC_DB="demo_kyc_$$"
PSQL=(psql -X -q "$ROLLGATE_TEST_DATABASE_URL")

cleanup() {
  set +e
  echo "==> cleaning up" >&2
  if [ "$MODE" = compose ]; then
    (cd "$ROOT/docker" && compose -p "$PROJECT" -f compose.yml down -v --remove-orphans >/dev/null 2>&1)
  else
    rollgate-sim localnet down --dir "$DEMO/localnet" >/dev/null 2>&1
  fi
  "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $OPERATOR_DB" -c "DROP DATABASE IF EXISTS $KYC_DB" >/dev/null 2>&1
  rm -rf "$DEMO"
}
trap cleanup EXIT

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

"${PSQL[@]}" -c "CREATE DATABASE $OPERATOR_DB" -c "CREATE DATABASE $KYC_DB" >/dev/null

if [ "$MODE" = compose ]; then
  echo "==> mode localnet.compose: building the simulator's images" >&2
  scripts/build-images >&2
  export SIM_RUN_DIR="$DEMO/run" OPERATOR_DATABASE="$OPERATOR_DB" KYC_DATABASE="$KYC_DB" REDIS_PREFIX="demo$$"
  export OPERATOR_PORT KYC_PORT CHAIN_PORT DEPLOYMENT_PORT PCCS_PORT
  mkdir -p "$SIM_RUN_DIR"/{link,aesmd,app_config,pccs}
  printf 'SGX_DEBUG=0\nSGX_PRERELEASE=1\n' > "$DEMO/run/.env"
  (cd docker && compose -p "$PROJECT" -f compose.yml up -d) >&2
  wait_http "http://127.0.0.1:$OPERATOR_PORT/v2/status"
  for _ in $(seq 100); do [ -s "$SIM_RUN_DIR/pccs/cert.sha256" ] && break; sleep 0.1; done
  RUNTIME="[runtime]
driver = \"compose\"

[runtime.compose]
project_dir = \"$ROOT/docker\"
files = [\"compose.yml\"]
project_name = \"$PROJECT\""
  render_config "$CONFIG" "$RUNTIME" localnet.compose "$SIM_RUN_DIR/app_config" "$DEMO/run/.env" \
       http://ethereum:8545 http://deployment-service:4040 \
       "$(cat "$SIM_RUN_DIR/pccs/cert.sha256")" "$SIM_RUN_DIR/aesmd/aesm.socket"
  GOOD=rollgate-sim/operator:v1.1.0 STALL=rollgate-sim/operator:v1.1.0-stall-request
else
  echo "==> mode localnet.loopback: starting the simulator as processes" >&2
  export ROLLGATE_SIM_DIR="$DEMO/localnet"
  rollgate-sim localnet up --dir "$ROLLGATE_SIM_DIR" --database-url "$ROLLGATE_TEST_DATABASE_URL" \
    --redis-url "$ROLLGATE_TEST_REDIS_URL" --operator-database "$OPERATOR_DB" --kyc-database "$KYC_DB" \
    --redis-prefix "demo$$" --operator-port "$OPERATOR_PORT" --kyc-port "$KYC_PORT" --chain-port "$CHAIN_PORT" \
    --deployment-port "$DEPLOYMENT_PORT" --pccs-port "$PCCS_PORT" >&2
  render_config "$CONFIG" "$LOOPBACK_RUNTIME" localnet.loopback "$ROLLGATE_SIM_DIR/app_config" "$ROLLGATE_SIM_DIR/runtime.env" \
       "http://127.0.0.1:$CHAIN_PORT" "http://127.0.0.1:$DEPLOYMENT_PORT" \
       "$(cat "$ROLLGATE_SIM_DIR/pccs/cert.sha256")" "$ROLLGATE_SIM_DIR/aesm/aesm.socket"
  GOOD=v1.1.0 STALL=v1.1.0-stall-request
fi
export ROLLGATE_CONFIG="$CONFIG"

