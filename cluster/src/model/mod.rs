//! The domain model: checks, results, incidents, intents.

mod check;
mod incident;
mod result;
mod status;

pub use check::{
    Catalog, CheckSpec, Confirm, Latency, NotifierKind, NotifierSpec, ProbeSpec, Recover,
    StatusRange,
};
pub use incident::{Delivery, Evidence, Incident, NotifyIntent, NotifyOutcome, Transition};
pub use result::{truncate, ProbeResult, ResultBatch, RESULT_MESSAGE_BYTES_MAX};
pub use status::{Reason, Status};
