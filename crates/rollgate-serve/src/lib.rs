//! `rollgate serve` and the HTML rollout report.
//!
//! - [`server::run`] serves, on a listener it is given, until a shutdown future completes:
//!   the status page, the rollout reports, Prometheus `/metrics`, `/live` and `/ready`, and the
//!   JSON API (endpoints and their authorization are listed in [`server`]). Everything it shows
//!   is read from the journal at request time, so it is right across restarts and shows
//!   rollouts run by the CLI as well as its own.
//! - [`report::render_report_html`] renders one rollout's decision record as a standalone page
//!   with an inline SVG timeline ([`timeline`]); `rollgate show ID --html FILE` writes it.
//! - [`metrics`] lists every metric.
//!
//! Pages are server-rendered HTML with an inline stylesheet: no script, nothing fetched.
#![forbid(unsafe_code)]

pub mod actions;
pub mod analysis;
pub mod api;
pub mod auth;
pub mod errors;
pub mod hosts;
pub mod html;
pub mod metrics;
pub mod report;
pub mod server;
pub mod state;
pub mod status_page;
pub mod timeline;

pub use auth::Token;
pub use errors::ServeError;
pub use report::render_report_html;
pub use server::{check_listen, router, run};
pub use state::{AppState, ServeOptions, ServeStatus};
