//! Property: the state rebuilt from the file equals the live state, after any sequence of
//! operations and crashes (reopens), and the journal accepts exactly the operations a model of
//! the rules accepts.

use proptest::prelude::*;
use rollgate_core::vocab::{GateResult, Outcome, Verdict};
use rollgate_journal::{Journal, JournalState, StepId};
use serde_json::json;

use crate::support::{baseline, rollout};

#[derive(Debug, Clone)]
enum Op {
    InsertBaseline(u8),
    MarkGood(u8),
    Begin(Option<u8>),
    Intent(u8),
    Outcome(bool),
    Gate(bool),
    Finish(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3).prop_map(Op::InsertBaseline),
        1 => (0u8..3).prop_map(Op::MarkGood),
        1 => proptest::option::of(0u8..3).prop_map(Op::Begin),
        3 => (0u8..4).prop_map(Op::Intent),
        3 => any::<bool>().prop_map(Op::Outcome),
        1 => any::<bool>().prop_map(Op::Gate),
        1 => (0u8..4).prop_map(Op::Finish),
        1 => Just(Op::Reopen),
    ]
}

const KINDS: [&str; 4] = ["apply", "restart", "gate", "restore"];
const OUTCOMES: [Outcome; 4] = [
    Outcome::Promoted,
    Outcome::RolledBack,
    Outcome::RollbackFailed,
    Outcome::Refused,
];

type ModelStep = (StepId, String, Option<bool>);
/// (id, outcome, steps)
type ModelRollout = (String, Option<Outcome>, Vec<ModelStep>);
/// (step id, kind, outcome recorded, ok)
type StepView = (StepId, String, bool, Option<bool>);

#[derive(Debug, Default)]
struct Model {
    baselines: Vec<String>,
    promoted: Vec<String>,
    /// (id, outcome, steps: (id, kind, ok))
    rollouts: Vec<ModelRollout>,
}

/// The parts of the state that do not depend on the clock.
#[derive(Debug, PartialEq)]
struct View {
    active: Option<(String, u32, Option<StepView>)>,
    last_known_good: Option<String>,
    last_finished: Option<(String, Option<Outcome>)>,
}

fn view(s: &JournalState) -> View {
    View {
        active: s.interrupted.as_ref().map(|a| {
            (
                a.rollout_id.clone(),
                a.steps,
                a.last_step
                    .as_ref()
                    .map(|l| (l.step_id, l.kind.clone(), l.outcome_recorded, l.ok)),
            )
        }),
        last_known_good: s.last_known_good.as_ref().map(|b| b.id.clone()),
        last_finished: s
            .last_finished
            .as_ref()
            .map(|h| (h.rollout_id.clone(), h.outcome)),
    }
}

impl Model {
    fn active(&mut self) -> Option<&mut ModelRollout> {
        self.rollouts.last_mut().filter(|r| r.1.is_none())
    }

    fn view(&self) -> View {
        let active = self.rollouts.last().filter(|r| r.1.is_none()).map(|r| {
            let steps = u32::try_from(r.2.len()).unwrap();
            (
                r.0.clone(),
                steps,
                r.2.last()
                    .map(|(id, k, ok)| (*id, k.clone(), ok.is_some(), *ok)),
            )
        });
        View {
            active,
            last_known_good: self.promoted.last().cloned(),
            last_finished: self
                .rollouts
                .iter()
                .rev()
                .find(|r| r.1.is_some())
                .map(|r| (r.0.clone(), r.1)),
        }
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path()).unwrap();
    let mut m = Model::default();
    for (n, op) in ops.into_iter().enumerate() {
        match op {
            Op::InsertBaseline(i) => {
                let id = format!("b{i}");
                let accepted = j.insert_baseline(&baseline(&id)).is_ok();
                assert_eq!(accepted, !m.baselines.contains(&id), "insert {id}");
                if accepted {
                    m.baselines.push(id);
                }
            }
            Op::MarkGood(i) => {
                let id = format!("b{i}");
                let accepted = j.mark_known_good(&id).is_ok();
                assert_eq!(accepted, m.baselines.contains(&id), "mark {id}");
                if accepted {
                    m.promoted.push(id);
                }
            }
            Op::Begin(b) => {
                let id = format!("r{n}");
                let bid = b.map(|i| format!("b{i}"));
                let accepted = j.begin_rollout(&rollout(&id, bid.as_deref())).is_ok();
                let expect = m.rollouts.last().is_none_or(|r| r.1.is_some())
                    && bid.as_ref().is_none_or(|b| m.baselines.contains(b));
                assert_eq!(accepted, expect, "begin {id}");
                if accepted {
                    m.rollouts.push((id, None, vec![]));
                }
            }
            Op::Intent(k) => {
                let target = m
                    .rollouts
                    .last()
                    .map(|r| r.0.clone())
                    .unwrap_or_else(|| "none".into());
                let res = j.record_intent(&target, KINDS[usize::from(k)], json!({"n": n}));
                match m.active() {
                    Some(r) => r.2.push((
                        res.expect("intent on the active rollout"),
                        KINDS[usize::from(k)].into(),
                        None,
                    )),
                    None => assert!(res.is_err()),
                }
            }
            Op::Outcome(ok) => {
                let last = m
                    .rollouts
                    .last()
                    .and_then(|r| r.2.last())
                    .map(|s| (s.0, s.2));
                if let Some((id, had)) = last {
                    let accepted = j.record_outcome(id, ok, json!({"ok": ok})).is_ok();
                    assert_eq!(accepted, had.is_none(), "outcome of {id}");
                    if accepted {
                        m.rollouts.last_mut().unwrap().2.last_mut().unwrap().2 = Some(ok);
                    }
                }
            }
            Op::Gate(pass) => {
                if let Some(r) = m.rollouts.last() {
                    let g = GateResult {
                        name: "readiness".into(),
                        verdict: if pass { Verdict::Pass } else { Verdict::Fail },
                        detail: String::new(),
                        evidence: json!(null),
                    };
                    j.record_gate(&r.0, &g).unwrap();
                }
            }
            Op::Finish(o) => {
                let target = m
                    .rollouts
                    .last()
                    .map(|r| r.0.clone())
                    .unwrap_or_else(|| "none".into());
                let accepted = j
                    .finish_rollout(&target, OUTCOMES[usize::from(o)], "done")
                    .is_ok();
                match m.active() {
                    Some(r) => {
                        assert!(accepted);
                        r.1 = Some(OUTCOMES[usize::from(o)]);
                    }
                    None => assert!(!accepted),
                }
            }
            Op::Reopen => {
                drop(j);
                j = Journal::open(dir.path()).unwrap();
            }
        }
        assert_eq!(
            view(&j.state().unwrap()),
            m.view(),
            "live state after op {n}"
        );
    }
    let live = j.state().unwrap();
    let live_history = j.history(1000).unwrap();
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(
        j.state().unwrap(),
        live,
        "replayed state differs from the live one"
    );
    assert_eq!(j.history(1000).unwrap(), live_history);
    let ids: Vec<_> = live_history
        .iter()
        .map(|h| (h.rollout_id.clone(), h.outcome))
        .collect();
    let want: Vec<_> = m
        .rollouts
        .iter()
        .rev()
        .map(|r| (r.0.clone(), r.1))
        .collect();
    assert_eq!(ids, want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_journal_gives_the_live_state(ops in proptest::collection::vec(op(), 1..30)) {
        run(ops);
    }
}
