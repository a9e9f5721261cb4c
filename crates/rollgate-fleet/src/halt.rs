//! The cluster kill switch as a conductor and its agents see it: a watch on the `halt` key, plus
//! a read every second so that an etcd that silently stopped answering is noticed too. etcd
//! unreachable *is* halted (no new step may start), until it answers again.

use std::time::Duration;

use etcd_client::Client;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::keys::Keys;
use crate::store;

/// Why nothing may start now.
#[derive(Debug, Clone, PartialEq)]
pub enum HaltState {
    /// No halt: steps may start (as far as the kill switch goes).
    Clear,
    /// `rollgate fleet halt`: its record (`{reason, at_ms}`).
    Halted(Value),
    /// etcd does not answer (the error, scrubbed by the caller before printing).
    Unreachable(String),
}

impl HaltState {
    pub fn is_clear(&self) -> bool {
        *self == HaltState::Clear
    }

    /// As recorded in a wave or printed by `fleet status`.
    pub fn to_json(&self) -> Value {
        match self {
            HaltState::Clear => Value::Null,
            HaltState::Halted(v) => v.clone(),
            HaltState::Unreachable(e) => json!({"reason": format!("etcd unreachable: {e}")}),
        }
    }
}

/// A running watch of the kill switch; stops with it.
#[derive(Debug)]
pub struct HaltWatch {
    rx: watch::Receiver<HaltState>,
    task: JoinHandle<()>,
}

/// How often the key is read besides the watch (and how soon a reconnect is tried).
const RECHECK: Duration = Duration::from_secs(1);

impl HaltWatch {
    /// Starts watching; the first state is read before this returns.
    pub async fn start(client: &Client, keys: &Keys) -> HaltWatch {
        let first = read_state(client, keys).await;
        let (tx, rx) = watch::channel(first);
        let task = tokio::spawn(run(client.clone(), keys.clone(), tx));
        HaltWatch { rx, task }
    }

    pub fn state(&self) -> HaltState {
        self.rx.borrow().clone()
    }

    /// A receiver for `select!` around work: changes whenever the state does.
    pub fn subscribe(&self) -> watch::Receiver<HaltState> {
        self.rx.clone()
    }
}

impl Drop for HaltWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_state(client: &Client, keys: &Keys) -> HaltState {
    match store::halted(client, keys).await {
        Ok(None) => HaltState::Clear,
        Ok(Some(v)) => HaltState::Halted(v),
        Err(e) => HaltState::Unreachable(crate::errors::chain(&e)),
    }
}

async fn run(client: Client, keys: Keys, tx: watch::Sender<HaltState>) {
    let key = keys.halt();
    loop {
        let stream = client.clone().watch(key.as_str(), None).await;
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tx.send_replace(HaltState::Unreachable(e.to_string()));
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        // The watch is in place: what it would have missed is in a fresh read.
        tx.send_replace(read_state(&client, &keys).await);
        loop {
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(_)) => {
                        tx.send_replace(read_state(&client, &keys).await);
                    }
                    Ok(None) => {
                        tx.send_replace(HaltState::Unreachable("the watch ended".into()));
                        break;
                    }
                    Err(e) => {
                        tx.send_replace(HaltState::Unreachable(e.to_string()));
                        break;
                    }
                },
                _ = tokio::time::sleep(RECHECK) => {
                    let state = read_state(&client, &keys).await;
                    let lost = matches!(state, HaltState::Unreachable(_));
                    tx.send_replace(state);
                    if lost {
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(RECHECK / 4).await;
    }
}
