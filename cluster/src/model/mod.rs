//! The domain model: checks, results, incidents, intents.

mod check;
mod incident;
mod result;
mod status;

pub use check::{
    BannerProtocol, BannerSpec, Catalog, CheckSpec, Confirm, Credentials, DnsSpec, HttpSpec,
    IcmpSpec, Latency, NagiosSpec, NotifierKind, NotifierSpec, ProbeSpec, Recover, SqlEngine,
    SqlSpec, StatusRange, TcpSpec, TlsMode, TlsSpec, REDACTED,
};
pub use incident::{Delivery, Evidence, Incident, NotifyIntent, NotifyOutcome, Transition};
pub use result::{
    truncate, Perf, ProbeResult, ResultBatch, PERFDATA_ITEMS_MAX, PERF_LABEL_BYTES_MAX,
    RESULT_MESSAGE_BYTES_MAX,
};
pub use status::{Reason, Status};
