//! `rollgate fleet status`: the wave and each node — agent liveness, value, health, role and
//! the phase of its record — as etcd holds them. JSON (the contract): `{wave: {…}|null,
//! agents: [{node_id, alive, value, healthy, role, phase}], halt: {reason, at_ms}|null,
//! conductor, next}` — `next` is what the wave's conductor would do now, which names what blocks.
//! Exit 0; 6 when etcd does not answer.

use clap::Args;
use rollgate_core::ExitCode;
use rollgate_fleet::conductor::WaveRecord;
use rollgate_fleet::status;

use crate::app::Ctx;
use crate::dispatch::fleet::{TargetArgs, connect, etcd_error, target};
use crate::errors::CmdResult;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

fn text<T: serde::Serialize>(v: &Option<T>) -> String {
    match v.as_ref().map(serde_json::to_value) {
        Some(Ok(serde_json::Value::String(s))) => s,
        Some(Ok(serde_json::Value::Bool(b))) => if b { "yes" } else { "no" }.into(),
        Some(Ok(other)) => other.to_string(),
        _ => "-".into(),
    }
}

pub async fn run(ctx: &Ctx, args: &StatusArgs) -> CmdResult {
    let fleet = target(ctx, &args.target)?;
    let (client, keys) = connect(&fleet).await?;
    let st = status::read(&client, &keys).await.map_err(etcd_error)?;
    if ctx.out.is_json() {
        ctx.out.json(&st)?;
        return Ok(ExitCode::Success);
    }
    crate::outln!("cluster {} (etcd {})", fleet.cluster, fleet.etcd.join(", "));
    match &st.halt {
        Some(h) => crate::outln!(
            "HALTED: {}",
            h.get("reason").and_then(|r| r.as_str()).unwrap_or("?")
        ),
        None => crate::outln!("not halted"),
    }
    match st
        .wave
        .as_ref()
        .map(|w| (w, serde_json::from_value::<WaveRecord>(w.clone())))
    {
        Some((_, Ok(w))) => {
            crate::outln!(
                "wave {} {}={}: {}{}",
                w.wave_id,
                w.layer,
                w.to,
                w.outcome.as_str(),
                w.reason
                    .as_deref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            );
            crate::outln!(
                "  canary {}, leader at start {}, stepped so far: {}",
                w.canary,
                w.leader_at_start,
                if w.order.is_empty() {
                    "none".into()
                } else {
                    w.order.join(" → ")
                }
            );
        }
        Some((raw, Err(_))) => crate::outln!("wave: {raw}"),
        None => crate::outln!("wave: none"),
    }
    if let Some(c) = &st.conductor {
        crate::outln!("conductor: {c}");
    }
    if let Some(n) = &st.next {
        crate::outln!("next: {n}");
    }
    crate::outln!();
    crate::outln!(
        "{:<6} {:<6} {:<10} {:<8} {:<20} {:<16} detail",
        "node",
        "agent",
        "role",
        "healthy",
        "value",
        "phase"
    );
    for a in &st.agents {
        let mut detail = Vec::new();
        if a.frozen {
            detail.push("frozen".to_owned());
        }
        if let Some(r) = &a.record {
            detail.push(format!("{}={} (wave {})", r.layer, r.to, r.wave_id));
            if let Some(id) = &r.rollout_id {
                detail.push(format!("rollout {id}"));
            }
            if let Some(why) = &r.reason {
                detail.push(why.clone());
            }
        }
        crate::outln!(
            "{:<6} {:<6} {:<10} {:<8} {:<20} {:<16} {}",
            a.node_id,
            if a.alive { "alive" } else { "gone" },
            text(&a.role),
            text(&a.healthy),
            text(&a.value),
            text(&a.phase),
            detail.join("; ")
        );
    }
    Ok(ExitCode::Success)
}
