//! Configuration parsing: every section of product.md, each error class, the default profile.

use std::path::Path;

use rollgate_core::config::{
    Attestation, Chain, Expectation, IdlePolicy, JsonType, MapEnv, Owner, PccsTrust,
    ProgressionMode, Runtime, default_profile, load_str,
};
use rollgate_core::vocab::{LayerKind, Mode};
use rollgate_core::{ConfigError, ExitCode};

const FILE: &str = "/etc/rollgate/rollgate.toml";

/// The product.md section 3 example, verbatim apart from the PCCS pin (which product.md elides).
const PRODUCT_EXAMPLE: &str = r#"
[node]
name = "node0"
mode = "localnet.loopback"         # localnet.loopback | localnet.compose | host (diagnostic only)
app_config = "/opt/dexlabs"        # APP_CONFIG
deployment_metadata = "ethereum/addresses.json"   # relative to app_config
deployment_metadata_owner = "deployment-service"  # user name or uid that must own it
enclave = true                     # enclave-capable runtime: PCCS, AESM and SGX checks apply
state_dir = "/var/lib/rollgate"    # journal and lock

[sgx]
build_flags = "/opt/dexlabs/enclave/build-flags.env"
runtime_env = "/srv/node/.env"
report_type = "SELF"
devices = ["/dev/sgx_enclave", "/dev/sgx_provision"]

[dependencies]
chain = { url = "${ETH_RPC_URL}" }
deployment_service = { url = "${DEPLOYMENT_SERVICE_URL}", path = "/health" }
postgres = { url = "${DATABASE_URL}", databases = ["node0", "kyc"] }
redis = { url = "${REDIS_URL}" }
pccs = { url = "https://127.0.0.1:8081", pin_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }
aesm = { socket = "/var/run/aesmd/aesm.socket" }

[[headroom.disk]]
path = "/var/lib/postgresql"
min_free = "10GiB"
min_free_percent = 10

[headroom.database]
max_growth_during_window = "2GiB"

[readiness.operator]
url = "http://127.0.0.1:8080/v2/status"
expect = [ { pointer = "/health", equals = "Healthy" }, { pointer = "/runningState", equals = "Running" } ]

[readiness.kyc]
url = "http://127.0.0.1:8090/v1/status"
expect = [ { pointer = "/isHealthy", equals = true } ]

[probes.encryption_key]
url = "http://127.0.0.1:8080/v2/encryption-key"

[probes.mark_price]
url = "http://127.0.0.1:8080/v2/mark-price"
symbols = ["ETHP", "BTCP"]
price_pointer = "/{symbol}/price"
timestamp_pointer = "/{symbol}/timestamp"
max_age = "30s"

[[progression]]
name = "requestIndex"
url = "http://127.0.0.1:8080/v2/status"
pointer = "/lastRequest/requestIndex"
window = "60s"

[[progression]]
name = "lastTx"
url = "http://127.0.0.1:8080/v2/status"
pointer = "/lastTx"
mode = "changes"
window = "60s"

[faults]
pointers = ["/attestation/fault", "/registration/fault"]
log_patterns = ["(?i)attestation.*(failed|error)", "(?i)registration.*(rejected|failed)"]

[alerts]
fields = ["/runningState", "/health", "/lastRequest/requestIndex", "/lastTx", "/raftMetrics/nodeId", "/raftMetrics/voterIds"]
rules_files = ["/etc/prometheus/rules/node.yml"]

[runtime]
driver = "compose"

[runtime.compose]
project_dir = "/srv/node"
files = ["docker-compose.yml"]

[runtime.command]
current = "cat /srv/node/versions/$ROLLGATE_LAYER"
apply = "/srv/node/bin/set-version"
restart = "/srv/node/bin/restart $ROLLGATE_COMPONENTS"

[layers.operator-image]
kind = "image"
components = ["operator"]

[layers.kyc-image]
kind = "image"
components = ["kyc"]

[layers.operator-config]
kind = "config"
components = ["operator"]

[rollout]
readiness_deadline = "120s"
bake = "10m"
idle_progression = "fail"
"#;

fn env() -> MapEnv {
    MapEnv::new([
        ("ETH_RPC_URL", "http://127.0.0.1:8545"),
        ("DEPLOYMENT_SERVICE_URL", "http://127.0.0.1:4040"),
        (
            "DATABASE_URL",
            "postgres://app:s3cret@127.0.0.1:5432/postgres",
        ),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
    ])
}

fn load(text: &str) -> Result<rollgate_core::config::Config, ConfigError> {
    load_str(Path::new(FILE), text, &env())
}

#[test]
fn every_section_of_the_product_example_parses() {
    let c = load(PRODUCT_EXAMPLE).unwrap();
    assert_eq!(c.node.name, "node0");
    assert_eq!(c.node.mode, Mode::LocalnetLoopback);
    assert_eq!(
        c.node.deployment_metadata,
        Path::new("/opt/dexlabs/ethereum/addresses.json")
    );
    assert_eq!(
        c.node.deployment_metadata_owner,
        Owner::Name("deployment-service".into())
    );
    assert!(c.node.enclave);
    let sgx = c.sgx.as_ref().unwrap();
    assert_eq!(sgx.report_type, "SELF");
    assert_eq!(sgx.attestation, Attestation::SelfReport);
    assert_eq!(sgx.devices.len(), 2);
    assert_eq!(
        c.dependencies.chain.as_ref().unwrap().url,
        "http://127.0.0.1:8545"
    );
    assert_eq!(
        c.dependencies.deployment_service.as_ref().unwrap().path,
        "/health"
    );
    assert_eq!(
        c.dependencies.postgres.as_ref().unwrap().databases,
        vec!["node0", "kyc"]
    );
    assert!(
        matches!(c.dependencies.pccs.as_ref().unwrap().trust, PccsTrust::Pin(p) if p[0] == 0x9f)
    );
    assert_eq!(
        c.dependencies.aesm.as_ref().unwrap().socket,
        Path::new("/var/run/aesmd/aesm.socket")
    );
    assert_eq!(c.headroom.disk[0].min_free_bytes, Some(10 << 30));
    assert_eq!(c.headroom.disk[0].min_free_percent, Some(10.0));
    assert_eq!(
        c.headroom
            .database
            .as_ref()
            .unwrap()
            .max_growth_during_window,
        2 << 30
    );
    assert_eq!(c.readiness.len(), 2);
    let kyc = c.readiness.iter().find(|r| r.name == "kyc").unwrap();
    assert_eq!(
        kyc.expect[0].check,
        Expectation::Equals(serde_json::Value::Bool(true))
    );
    assert!(c.probes.encryption_key.is_some());
    let mp = c.probes.mark_price.as_ref().unwrap();
    assert_eq!(mp.max_age.as_secs(), 30);
    assert_eq!(mp.symbols, vec!["ETHP", "BTCP"]);
    assert_eq!(c.progression.len(), 2);
    assert_eq!(c.progression[0].mode, ProgressionMode::Increases);
    assert_eq!(c.progression[1].mode, ProgressionMode::Changes);
    assert_eq!(c.progression[1].window.as_secs(), 60);
    assert_eq!(c.faults.pointers.len(), 2);
    assert_eq!(c.faults.log_patterns.len(), 2);
    assert_eq!(c.alerts.fields.len(), 6);
    assert_eq!(c.alerts.rules_files.len(), 1);
    assert!(
        matches!(c.runtime, Runtime::Compose(ref rc) if rc.project_dir == Path::new("/srv/node"))
    );
    assert_eq!(c.layers.len(), 3);
    assert_eq!(c.layers["operator-config"].kind, LayerKind::Config);
    assert_eq!(c.layers["kyc-image"].components, vec!["kyc"]);
    assert_eq!(c.rollout.readiness_deadline.as_secs(), 120);
    assert_eq!(c.rollout.bake.as_secs(), 600);
    assert_eq!(c.rollout.idle_progression, IdlePolicy::Fail);
    // Components default to the readiness entries.
    assert_eq!(
        c.components.keys().collect::<Vec<_>>(),
        vec!["kyc", "operator"]
    );
}

#[test]
fn command_runtime_keeps_shell_text_unexpanded() {
    let text = PRODUCT_EXAMPLE.replace("driver = \"compose\"", "driver = \"command\"");
    let c = load(&text).unwrap();
    let Runtime::Command(cmd) = c.runtime else {
        panic!("expected command runtime")
    };
    assert_eq!(cmd.current, "cat /srv/node/versions/$ROLLGATE_LAYER");
    assert_eq!(cmd.timeout.as_secs(), 60);
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn chain_freshness_keys() {
    let c = load(PRODUCT_EXAMPLE).unwrap();
    let chain = c.dependencies.chain.unwrap();
    assert_eq!(chain.max_block_age, Chain::DEFAULT_MAX_BLOCK_AGE);
    assert_eq!(chain.advance_window, None);
    let text = PRODUCT_EXAMPLE.replace(
        "chain = { url = \"${ETH_RPC_URL}\" }",
        "chain = { url = \"${ETH_RPC_URL}\", max_block_age = \"36s\", advance_window = \"3s\" }",
    );
    let chain = load(&text).unwrap().dependencies.chain.unwrap();
    assert_eq!(chain.max_block_age.as_secs(), 36);
    assert_eq!(chain.advance_window.map(|d| d.as_secs()), Some(3));
    for (value, fragment) in [
        ("0s", "must be greater than zero"),
        ("soon", "invalid duration"),
    ] {
        let text = PRODUCT_EXAMPLE.replace(
            "chain = { url = \"${ETH_RPC_URL}\" }",
            &format!("chain = {{ url = \"${{ETH_RPC_URL}}\", max_block_age = \"{value}\" }}"),
        );
        let msg = load(&text).unwrap_err().to_string();
        let line = line_of(&text, "max_block_age");
        assert!(msg.starts_with(&format!("{FILE}:{line}:")), "{msg}");
        assert!(msg.contains("dependencies.chain.max_block_age"), "{msg}");
        assert!(msg.contains(fragment), "{msg}");
    }
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = PRODUCT_EXAMPLE.replace("enclave = true ", "enclaev = true ");
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.exit_code(), ExitCode::Usage);
    let line = line_of(&text, "enclaev");
    assert!(msg.starts_with(&format!("{FILE}:{line}:")), "{msg}");
    assert!(msg.contains("enclaev"), "{msg}");
}

#[test]
fn error_classes() {
    // (description, edit, expected line needle, expected fragment)
    let cases: &[(&str, (&str, &str), &str, &str)] = &[
        (
            "bad type",
            ("enclave = true ", "enclave = \"yes\" "),
            "enclave = \"yes\"",
            "invalid type",
        ),
        (
            "bad duration",
            ("max_age = \"30s\"", "max_age = \"thirty\""),
            "max_age",
            "invalid duration",
        ),
        (
            "bad size",
            ("min_free = \"10GiB\"", "min_free = \"10 parsecs\""),
            "min_free =",
            "unknown unit",
        ),
        (
            "bad mode",
            ("mode = \"localnet.loopback\" ", "mode = \"devnet\" "),
            "mode = \"devnet\"",
            "is not one of",
        ),
        (
            "bad url scheme",
            (
                "url = \"http://127.0.0.1:8090/v1/status\"",
                "url = \"127.0.0.1:8090\"",
            ),
            "127.0.0.1:8090\"",
            "not a URL",
        ),
        (
            "bad pointer",
            ("pointer = \"/lastTx\"", "pointer = \"lastTx\""),
            "pointer = \"lastTx\"",
            "JSON pointer",
        ),
        (
            "bad regex",
            ("\"(?i)attestation.*(failed|error)\"", "\"(unclosed\""),
            "(unclosed",
            "regular expression",
        ),
        (
            "bad layer kind",
            ("kind = \"config\"", "kind = \"helm\""),
            "kind = \"helm\"",
            "image, binary, config",
        ),
        (
            "bad idle policy",
            (
                "idle_progression = \"fail\"",
                "idle_progression = \"ignore\"",
            ),
            "idle_progression",
            "fail, inconclusive, pass",
        ),
        (
            "two pccs trusts",
            (
                "pin_sha256 = \"9f86",
                "insecure = true, pin_sha256 = \"9f86",
            ),
            "pccs =",
            "exactly one",
        ),
        (
            "short pin",
            (
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "9f86",
            ),
            "pccs =",
            "64 hex",
        ),
    ];
    for (what, (from, to), needle, fragment) in cases {
        assert!(
            PRODUCT_EXAMPLE.contains(from),
            "{what}: edit does not apply"
        );
        let text = PRODUCT_EXAMPLE.replacen(from, to, 1);
        let err = load(&text).expect_err(what);
        let msg = err.to_string();
        let line = line_of(&text, needle);
        assert!(
            msg.starts_with(&format!("{FILE}:{line}")),
            "{what}: wrong location: {msg}"
        );
        assert!(msg.contains(fragment), "{what}: {msg}");
        assert_eq!(err.exit_code(), ExitCode::Usage, "{what}");
    }
}

#[test]
fn missing_env_var_is_named() {
    let env = MapEnv::new([("ETH_RPC_URL", "http://127.0.0.1:8545")]);
    let err = load_str(Path::new(FILE), PRODUCT_EXAMPLE, &env).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, ConfigError::MissingEnv { ref var, .. } if var == "DEPLOYMENT_SERVICE_URL"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            ":{}:",
            line_of(PRODUCT_EXAMPLE, "DEPLOYMENT_SERVICE_URL")
        )),
        "{msg}"
    );
    assert!(msg.contains("dependencies.deployment_service.url"), "{msg}");
}

#[test]
fn mode_mismatch_is_detected_at_resolve_time() {
    let mut vars = env().0;
    vars.insert(
        "DEPLOYMENT_SERVICE_URL".into(),
        "http://deployment-service:4040".into(),
    );
    let err = load_str(Path::new(FILE), PRODUCT_EXAMPLE, &MapEnv(vars)).unwrap_err();
    assert!(matches!(err, ConfigError::ModeMismatch { .. }), "{err}");
    assert_eq!(err.exit_code(), ExitCode::NotReady);
    assert!(
        err.to_string().contains("http://deployment-service:4040"),
        "{err}"
    );

    // Both URLs agree with each other but not with the declared mode.
    let mut vars = env().0;
    vars.insert("ETH_RPC_URL".into(), "http://ethereum:8545".into());
    vars.insert(
        "DEPLOYMENT_SERVICE_URL".into(),
        "http://deployment-service:4040".into(),
    );
    let err = load_str(Path::new(FILE), PRODUCT_EXAMPLE, &MapEnv(vars.clone())).unwrap_err();
    assert!(
        err.to_string().contains("node.mode is localnet.loopback"),
        "{err}"
    );

    // ...and they load in compose mode.
    let text = PRODUCT_EXAMPLE.replace(
        "mode = \"localnet.loopback\"",
        "mode = \"localnet.compose\"",
    );
    assert_eq!(
        load_str(Path::new(FILE), &text, &MapEnv(vars))
            .unwrap()
            .node
            .mode,
        Mode::LocalnetCompose
    );
}

#[test]
fn layer_naming_unknown_component_is_refused() {
    let text = PRODUCT_EXAMPLE.replace(
        "components = [\"kyc\"]",
        "components = [\"kyc\", \"oracle\"]",
    );
    let err = load(&text).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::UnknownComponent { .. }), "{msg}");
    assert!(
        msg.contains("`oracle`") && msg.contains("known components: kyc, operator"),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("{FILE}:{}", line_of(&text, "\"oracle\""))),
        "{msg}"
    );
}

#[test]
fn secrets_do_not_appear_in_errors() {
    let mut vars = env().0;
    vars.insert(
        "DATABASE_URL".into(),
        "mysql://app:s3cret@127.0.0.1/x".into(),
    );
    let err = load_str(Path::new(FILE), PRODUCT_EXAMPLE, &MapEnv(vars)).unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn default_profile_loads_with_no_environment_in_every_mode() {
    for mode in [Mode::LocalnetLoopback, Mode::LocalnetCompose] {
        let text = default_profile("operator-localnet", mode).unwrap();
        assert!(
            !["@MODE@", "@CHAIN_URL@", "@DEPLOYMENT_URL@"]
                .iter()
                .any(|p| text.contains(p)),
            "unfilled placeholder"
        );
        let c = load_str(Path::new("rollgate.toml"), &text, &MapEnv::default()).unwrap();
        assert_eq!(c.node.mode, mode);
        assert_eq!(
            c.dependencies.chain.as_ref().unwrap().url,
            mode.canonical_chain_url().unwrap()
        );
        assert_eq!(c.node.app_config, Path::new("/opt/dexlabs"));
        assert_eq!(
            c.dependencies.postgres.as_ref().unwrap().databases,
            vec!["node0", "kyc"]
        );
        assert!(c.readiness.iter().any(|r| r.url.contains(":8080/")));
        assert!(c.readiness.iter().any(|r| r.url.contains(":8090/")));
        assert_eq!(c.layers["operator-image"].components, vec!["operator"]);
    }
    // Environment overrides apply.
    let text = default_profile("operator-localnet", Mode::LocalnetLoopback).unwrap();
    let env = MapEnv::new([("ETH_RPC_URL", "http://127.0.0.1:18545")]);
    let c = load_str(Path::new("rollgate.toml"), &text, &env).unwrap();
    assert_eq!(c.dependencies.chain.unwrap().url, "http://127.0.0.1:18545");
    assert!(default_profile("no-such-profile", Mode::LocalnetLoopback).is_none());
}

#[test]
fn expectation_types_parse() {
    let text = PRODUCT_EXAMPLE.replace(
        "expect = [ { pointer = \"/isHealthy\", equals = true } ]",
        "expect = [ { pointer = \"/isHealthy\", type = \"boolean\" }, { pointer = \"/v\", one_of = [\"a\", 1] }, { pointer = \"/x\", present = false } ]",
    );
    let c = load(&text).unwrap();
    let kyc = c.readiness.iter().find(|r| r.name == "kyc").unwrap();
    assert_eq!(kyc.expect[0].check, Expectation::Type(JsonType::Boolean));
    assert!(matches!(kyc.expect[1].check, Expectation::OneOf(ref v) if v.len() == 2));
    assert_eq!(kyc.expect[2].check, Expectation::Present(false));
}

#[test]
fn declared_secrets_child_env_and_serve_access_keys() {
    let text = format!(
        "secrets = [\"${{DATABASE_URL}}\", \"literal-secret\"]\n{}\n[serve]\nread_token = \"read-token-0123456789\"\nallowed_hosts = [\"Node0.internal\", \"ops.example:8443\"]\n",
        PRODUCT_EXAMPLE.replace(
            "[runtime.command]\n",
            "[runtime.command]\nenv = [\"NODE_ROOT\", \"_X1\"]\n"
        )
    );
    let c = load(&text).unwrap();
    assert_eq!(
        c.secrets,
        [
            "postgres://app:s3cret@127.0.0.1:5432/postgres",
            "literal-secret"
        ]
    );
    assert_eq!(c.serve.read_token.as_deref(), Some("read-token-0123456789"));
    assert_eq!(
        c.serve.allowed_hosts,
        ["node0.internal", "ops.example:8443"]
    );
    let text = text.replace("driver = \"compose\"", "driver = \"command\"");
    let Runtime::Command(cmd) = load(&text).unwrap().runtime else {
        panic!("expected command runtime")
    };
    assert_eq!(cmd.env, ["NODE_ROOT", "_X1"]);

    // (edit of the text above, the key named, a fragment of the message)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "\"literal-secret\"",
            "\"abc\"",
            "secrets[1]",
            "at least 4 characters",
        ),
        (
            "\"literal-secret\"",
            "\"${EMPTY:-}\"",
            "secrets[1]",
            "must not be empty",
        ),
        (
            "\"_X1\"",
            "\"BAD-NAME\"",
            "runtime.command.env[1]",
            "not an environment variable name",
        ),
        (
            "\"NODE_ROOT\"",
            "\"1X\"",
            "runtime.command.env[0]",
            "not an environment variable name",
        ),
        (
            "\"ops.example:8443\"",
            "\"http://ops.example\"",
            "serve.allowed_hosts[1]",
            "not a host name",
        ),
        (
            "allowed_hosts",
            "read_token_file = \"/etc/t\"\nallowed_hosts",
            "serve.read_token_file",
            "not both",
        ),
    ];
    for (from, to, key, fragment) in cases {
        let bad = text.replacen(from, to, 1);
        let err = load(&bad).expect_err(key);
        let msg = err.to_string();
        assert!(msg.starts_with(FILE), "{key}: {msg}");
        assert!(msg.contains(key) && msg.contains(fragment), "{key}: {msg}");
        assert_eq!(err.exit_code(), ExitCode::Usage, "{key}");
    }
}

/// `snapshot`, `snapshot_method`, `snapshot_retention`, and the command driver's `stop`/`start`.
#[test]
fn layer_snapshots() {
    use rollgate_core::config::{SnapshotMethod, SnapshotPlan};
    let with = |layer: &str| {
        PRODUCT_EXAMPLE.replace(
            "[layers.kyc-image]\nkind = \"image\"\ncomponents = [\"kyc\"]\n",
            &format!("[layers.kyc-image]\nkind = \"image\"\ncomponents = [\"kyc\"]\n{layer}"),
        )
    };
    let c = load(&with(
        "snapshot = [\"kyc\", \"kyc\"]\nsnapshot_method = \"template\"\n",
    ))
    .unwrap();
    assert_eq!(
        c.layers["kyc-image"].snapshot,
        Some(SnapshotPlan {
            databases: vec!["kyc".into()],
            method: SnapshotMethod::Template
        })
    );
    assert_eq!(c.layers["operator-image"].snapshot, None);
    assert_eq!(
        c.rollout.snapshot_retention,
        std::time::Duration::from_secs(7 * 86400)
    );
    let pg = c.dependencies.postgres.as_ref().unwrap();
    assert_eq!(pg.snapshot.template, vec!["kyc".to_string()]);
    let c = load(&with("snapshot = [\"node0\"]\n").replace(
        "idle_progression = \"fail\"",
        "idle_progression = \"fail\"\nsnapshot_retention = \"2d\"",
    ))
    .unwrap();
    let plan = c.layers["kyc-image"].snapshot.clone().unwrap();
    assert_eq!(plan.method, SnapshotMethod::Dump, "the default method");
    assert_eq!(
        c.rollout.snapshot_retention,
        std::time::Duration::from_secs(2 * 86400)
    );
    let pg = c.dependencies.postgres.as_ref().unwrap();
    assert_eq!(
        pg.snapshot.dump_dir.as_deref(),
        Some(Path::new("/var/lib/rollgate/snapshots"))
    );

    // Errors name the file, line and key, and exit 2.
    for (layer, needle, says) in [
        (
            "snapshot = [\"orders\"]\n",
            "\"orders\"",
            "`orders` is not a database of [dependencies.postgres] (configured: node0, kyc)",
        ),
        (
            "snapshot = [\"kyc\"]\nsnapshot_method = \"rsync\"\n",
            "\"rsync\"",
            "`rsync` is not one of template, dump",
        ),
        (
            "snapshot_method = \"dump\"\n",
            "snapshot_method = \"dump\"",
            "has no effect without `snapshot",
        ),
    ] {
        let text = with(layer);
        let err = load(&text).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), ExitCode::Usage, "{msg}");
        assert!(msg.contains(says), "{msg}");
        assert!(
            msg.starts_with(&format!("{FILE}:{}", line_of(&text, needle))),
            "{msg}"
        );
    }

    // The command driver must be able to stop and start the components.
    let command =
        with("snapshot = [\"kyc\"]\n").replace("driver = \"compose\"", "driver = \"command\"");
    let msg = load(&command).unwrap_err().to_string();
    assert!(
        msg.contains("needs `stop` and `start` in [runtime.command]"),
        "{msg}"
    );
    let command = command.replace(
        "restart = \"/srv/node/bin/restart $ROLLGATE_COMPONENTS\"",
        "restart = \"/srv/node/bin/restart $ROLLGATE_COMPONENTS\"\nstop = \"/srv/node/bin/stop\"\nstart = \"/srv/node/bin/start\"",
    );
    let c = load(&command).unwrap();
    let Runtime::Command(cmd) = &c.runtime else {
        panic!("command runtime")
    };
    assert_eq!(cmd.stop.as_deref(), Some("/srv/node/bin/stop"));
}

#[test]
fn config_layer_files_resolve_and_protected_paths_are_refused() {
    let with_files = |files: &str| {
        PRODUCT_EXAMPLE.replace(
            "[layers.operator-config]\nkind = \"config\"\ncomponents = [\"operator\"]",
            &format!(
                "[layers.operator-config]\nkind = \"config\"\ncomponents = [\"operator\"]\nfiles = {files}"
            ),
        )
    };
    // Relative to the configuration file's directory; the product example (no files) still loads.
    let cfg = load(&with_files(
        r#"["node/operator.env", "/srv/node/./operator.toml"]"#,
    ))
    .unwrap();
    assert_eq!(
        cfg.layers["operator-config"].files,
        [
            Path::new("/etc/rollgate/node/operator.env"),
            Path::new("/srv/node/operator.toml")
        ]
    );
    assert!(
        load(PRODUCT_EXAMPLE).unwrap().layers["operator-config"]
            .files
            .is_empty()
    );

    for (files, needle) in [
        (
            r#"["/opt/dexlabs/ethereum/addresses.json"]"#,
            "deployment metadata",
        ),
        (
            r#"["/opt/dexlabs/ethereum/other.env"]"#,
            "APP_CONFIG/ethereum",
        ),
        (
            r#"["/opt/dexlabs/x/../ethereum/other.env"]"#,
            "APP_CONFIG/ethereum",
        ),
        (r#"["/opt/dexlabs"]"#, "deployment metadata"),
        (r#"["/a/op.env", "/b/op.env"]"#, "two files are named"),
        (r#"["/a/op.env", "/a/op.env"]"#, "named twice"),
    ] {
        let text = with_files(files);
        let err = load(&text).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), ExitCode::Usage, "{msg}");
        assert!(msg.contains("layers.operator-config.files"), "{msg}");
        assert!(msg.contains(needle), "{files}: {msg}");
        assert!(
            msg.starts_with(&format!(
                "{FILE}:{}",
                line_of(&text, &format!("files = {files}"))
            )),
            "{msg}"
        );
    }
    // Only a config layer owns files.
    let text = PRODUCT_EXAMPLE.replace(
        "[layers.kyc-image]\nkind = \"image\"\ncomponents = [\"kyc\"]",
        "[layers.kyc-image]\nkind = \"image\"\ncomponents = [\"kyc\"]\nfiles = [\"/a\"]",
    );
    let msg = load(&text).unwrap_err().to_string();
    assert!(msg.contains("only a `config` layer owns files"), "{msg}");
}

const ANALYSIS: &str = r#"
[prometheus]
url = "http://127.0.0.1:9090/"
bearer_token_file = "/etc/rollgate/prom.token"

[[analysis]]
name = "errors"
query = 'sum(increase(operator_errors_total[1m]))'
success = "< 1"

[[analysis]]
name = "rejections"
query = "node:rejections:ratio1m"
success = ">= 0.5"
interval = "2s"
failure_limit = 2
inconclusive_limit = 1
no_data = "inconclusive"
"#;

#[test]
fn analysis_gates_resolve_with_argo_defaults() {
    let c = load(&format!("{PRODUCT_EXAMPLE}{ANALYSIS}")).unwrap();
    let p = c.prometheus.as_ref().unwrap();
    assert_eq!(p.url, "http://127.0.0.1:9090");
    assert_eq!(
        p.bearer_token_file.as_deref(),
        Some(Path::new("/etc/rollgate/prom.token"))
    );
    let [errors, rejections] = &c.analysis[..] else {
        panic!("{:?}", c.analysis)
    };
    assert_eq!(errors.success.to_string(), "< 1");
    assert_eq!(errors.interval, std::time::Duration::from_secs(5));
    assert_eq!((errors.failure_limit, errors.inconclusive_limit), (0, 0));
    assert_eq!(errors.no_data, rollgate_core::config::NoDataPolicy::Fail);
    assert_eq!(
        rejections.success.op,
        rollgate_core::analysis::CompareOp::Ge
    );
    assert_eq!(rejections.interval, std::time::Duration::from_secs(2));
    assert_eq!(
        (rejections.failure_limit, rejections.inconclusive_limit),
        (2, 1)
    );
    assert_eq!(
        rejections.no_data,
        rollgate_core::config::NoDataPolicy::Inconclusive
    );
}

#[test]
fn analysis_errors_name_line_and_key() {
    let text = format!("{PRODUCT_EXAMPLE}{ANALYSIS}");
    // (edit, line needle, key, fragment)
    let cases: &[((&str, &str), &str, &str, &str)] = &[
        (
            ("success = \"< 1\"", "success = \"0.01\""),
            "success = \"0.01\"",
            "analysis.success",
            "not a comparison",
        ),
        (
            ("success = \"< 1\"", "success = \"< lots\""),
            "success = \"< lots\"",
            "analysis.success",
            "not a finite number",
        ),
        (
            ("no_data = \"inconclusive\"", "no_data = \"skip\""),
            "no_data = \"skip\"",
            "analysis.no_data",
            "pass, inconclusive, fail",
        ),
        (
            ("failure_limit = 2", "failure_limit = -1"),
            "failure_limit = -1",
            "analysis.failure_limit",
            "must not be negative",
        ),
        (
            ("interval = \"2s\"", "interval = \"0s\""),
            "interval = \"0s\"",
            "analysis.interval",
            "greater than zero",
        ),
        (
            ("name = \"rejections\"", "name = \"errors\" "),
            "name = \"errors\" ",
            "analysis.name",
            "duplicate",
        ),
        (
            (
                "url = \"http://127.0.0.1:9090/\"",
                "url = \"127.0.0.1:9090\"",
            ),
            "url = \"127.0.0.1:9090\"",
            "prometheus.url",
            "not a URL",
        ),
        (
            (
                "[prometheus]\nurl = \"http://127.0.0.1:9090/\"\nbearer_token_file = \"/etc/rollgate/prom.token\"\n",
                "",
            ),
            "name = \"errors\"",
            "analysis",
            "add a [prometheus] section",
        ),
    ];
    for ((from, to), needle, key, fragment) in cases {
        assert!(text.contains(from), "{from}: edit does not apply");
        let edited = text.replacen(from, to, 1);
        let err = load(&edited).expect_err(from);
        let msg = err.to_string();
        let line = line_of(&edited, needle);
        assert!(
            msg.starts_with(&format!("{FILE}:{line}")),
            "{from}: wrong location: {msg}"
        );
        assert!(msg.contains(&format!("`{key}`")), "{from}: {msg}");
        assert!(msg.contains(fragment), "{from}: {msg}");
        assert_eq!(err.exit_code(), ExitCode::Usage, "{from}");
    }
}

#[test]
fn alertmanager_matchers_parse_and_silence_needs_one() {
    let am = r#"
[alertmanager]
url = "http://127.0.0.1:9093"
silence = true
matchers = ['node="node0"', 'alertname!="Watchdog"', 'severity=~"page|warn"', 'job!~"test.*"']
"#;
    let c = load(&format!("{PRODUCT_EXAMPLE}{am}")).unwrap();
    let a = c.alertmanager.unwrap();
    assert!(a.silence);
    let shown: Vec<String> = a.matchers.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        shown,
        [
            "node=\"node0\"",
            "alertname!=\"Watchdog\"",
            "severity=~\"page|warn\"",
            "job!~\"test.*\""
        ]
    );
    for (edit, key, fragment) in [
        (
            ("'node=\"node0\"', ", "'node=node0', "),
            "alertmanager.matchers[0]",
            "not a label matcher",
        ),
        (
            ("'node=\"node0\"', ", "'1node=\"x\"', "),
            "alertmanager.matchers[0]",
            "not a label matcher",
        ),
        (
            (
                "'node=\"node0\"', 'alertname!=\"Watchdog\"', 'severity=~\"page|warn\"', ",
                "",
            ),
            "alertmanager.matchers",
            "at least one matcher",
        ),
    ] {
        let text = format!("{PRODUCT_EXAMPLE}{am}").replacen(edit.0, edit.1, 1);
        let err = load(&text).expect_err(key);
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{key}`")), "{msg}");
        assert!(msg.contains(fragment), "{msg}");
        assert_eq!(err.exit_code(), ExitCode::Usage);
    }
}

/// The contract's `[fleet]` example (shared docs, fleet.md), verbatim.
const FLEET_EXAMPLE: &str = r#"
[fleet]
etcd = ["http://127.0.0.1:2379"]        # endpoints; TLS and user/password supported
cluster = "dex-a"                        # key prefix /rollgate/v1/<cluster>/
node_id_pointer = "/raftMetrics/nodeId"  # read from the operator readiness document
voters_pointer = "/raftMetrics/voterIds"
leader_pointer = "/raftMetrics/leaderId" # optional; without it the leader must be given (--leader)
max_lag = 50                             # requestIndex behind the cluster's highest
stabilization = "15s"                    # cluster gates must hold this long after a node is done
canary_soak = "0s"                       # extra wait after the first node
"#;

#[test]
fn fleet_section_of_the_contract_parses_and_defaults() {
    assert!(load(PRODUCT_EXAMPLE).unwrap().fleet.is_none());
    let f = load(&format!("{PRODUCT_EXAMPLE}{FLEET_EXAMPLE}"))
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(f.etcd, ["http://127.0.0.1:2379"]);
    assert_eq!(f.cluster, "dex-a");
    assert_eq!(f.node_id_pointer, "/raftMetrics/nodeId");
    assert_eq!(f.voters_pointer, "/raftMetrics/voterIds");
    assert_eq!(f.leader_pointer.as_deref(), Some("/raftMetrics/leaderId"));
    assert_eq!(f.max_lag, 50);
    assert_eq!(f.stabilization.as_secs(), 15);
    assert!(f.canary_soak.is_zero());
    assert_eq!((f.user, f.password, f.ca_file), (None, None, None));

    // Only the two required keys: the pointers and timings default, no leader pointer.
    let minimal = format!(
        "{PRODUCT_EXAMPLE}\n[fleet]\netcd = [\"https://10.0.0.5:2379\", \"http://10.0.0.6:2379\"]\ncluster = \"dex-a\"\n"
    );
    let f = load(&minimal).unwrap().fleet.unwrap();
    assert_eq!(f.etcd.len(), 2);
    assert_eq!(f.node_id_pointer, "/raftMetrics/nodeId");
    assert_eq!(f.voters_pointer, "/raftMetrics/voterIds");
    assert_eq!(f.leader_pointer, None);
    assert_eq!((f.max_lag, f.stabilization.as_secs()), (50, 15));

    let auth = format!(
        "{PRODUCT_EXAMPLE}{FLEET_EXAMPLE}user = \"rollgate\"\npassword = \"etcd-s3cret\"\nca_file = \"/etc/etcd/ca.pem\"\n"
    );
    let f = load(&auth).unwrap().fleet.unwrap();
    assert_eq!(f.user.as_deref(), Some("rollgate"));
    assert_eq!(f.password.as_deref(), Some("etcd-s3cret"));
    assert_eq!(f.ca_file.unwrap().to_str(), Some("/etc/etcd/ca.pem"));
}

#[test]
fn fleet_errors_name_the_file_line_and_key() {
    let base = format!("{PRODUCT_EXAMPLE}{FLEET_EXAMPLE}");
    // (edit from, edit to, line needle, key, fragment)
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "etcd = [\"http://127.0.0.1:2379\"]",
            "etcd = [\"127.0.0.1:2379\"]",
            "etcd = [",
            "fleet.etcd",
            "is not a URL",
        ),
        (
            "etcd = [\"http://127.0.0.1:2379\"]",
            "etcd = []",
            "etcd = [",
            "fleet.etcd",
            "at least one",
        ),
        (
            "cluster = \"dex-a\"",
            "cluster = \"dex/a\"",
            "cluster = ",
            "fleet.cluster",
            "not a cluster name",
        ),
        (
            "voters_pointer = \"/raftMetrics/voterIds\"",
            "voters_pointer = \"raftMetrics.voterIds\"",
            "voters_pointer",
            "fleet.voters_pointer",
            "not a JSON pointer",
        ),
        (
            "max_lag = 50",
            "max_lag = -1",
            "max_lag",
            "fleet.max_lag",
            "must not be negative",
        ),
        (
            "stabilization = \"15s\"",
            "stabilization = \"a while\"",
            "stabilization",
            "fleet.stabilization",
            "invalid duration",
        ),
        (
            "canary_soak = \"0s\" ",
            "canary_soak = \"0s\"\nuser = \"rollgate\" ",
            "user = ",
            "fleet.user",
            "fleet.password",
        ),
        (
            "canary_soak = \"0s\" ",
            "canary_soak = \"0s\"\nleader = 1 ",
            "leader = 1",
            "leader",
            "unknown field",
        ),
    ];
    for (from, to, needle, key, fragment) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let err = load(&text).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::Usage, "{err}");
        let msg = err.to_string();
        let line = line_of(&text, needle);
        assert!(msg.starts_with(&format!("{FILE}:{line}:")), "{key}: {msg}");
        assert!(msg.contains(key), "{key}: {msg}");
        assert!(msg.contains(fragment), "{key}: {msg}");
    }
    // `line_of` finds the first mention: `etcd = [` also appears in no other line.
    assert_eq!(base.lines().filter(|l| l.contains("etcd = [")).count(), 1);
}
