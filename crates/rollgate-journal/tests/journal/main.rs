//! Integration tests of the journal: schema and migrations, the decision record, recovery
//! (replaying the journal gives the live state), the lock against a killed holder, and that
//! secrets never reach the database file.

mod lock;
mod records;
mod replay;
mod report;
mod schema;
mod secrets;
mod support;
