//! The HTTP API (`/api/v1/...`), health endpoints, `/metrics`, and the dashboard at `/`.
//!
//! Reads are served from the local applied state; writes need the bearer token and go
//! through raft (forwarded to the leader from any node).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use consentry_cluster::command::{Command, CommandResponse};
use consentry_cluster::membership::{AdminError, AdminRequest};
use consentry_cluster::model::{Matcher, SilenceSpec};
use consentry_cluster::state::ClusterState;
use consentry_cluster::types::{ClusterNode, Raft};
use consentry_storage::StateReader;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;

use crate::checks_file::{self, CHECKS_FILE_BYTES_MAX};
use crate::clock::Clock;
use crate::demo_target::DemoTarget;
use crate::error::WriteError;
use crate::history::History;
use crate::metrics;
use crate::read_api::{self, read_through_leader, ApiPath, ApiQuery, ReadOpts};
use crate::snapshot_file::{self, SnapshotFile, SNAPSHOT_BYTES_MAX};
use crate::views;
use crate::wall_time;
use crate::writer::Writer;

/// Incidents returned by one read.
pub const INCIDENTS_PAGE_MAX: usize = 1_000;

pub struct ApiState {
    pub node_id: u64,
    pub site: String,
    pub raft: Raft,
    pub state: StateReader<ClusterState>,
    pub writer: Writer,
    pub token: String,
    pub metrics: Option<PrometheusHandle>,
    /// SHA-256 of the cluster CA: names the cluster in snapshots.
    pub cluster_ca_sha256: String,
    /// The node's data directory, whose size `/metrics` reports.
    pub data_dir: std::path::PathBuf,
    /// Set by `consentry demo`: lets the dashboard break and heal the demo target.
    pub demo: Option<DemoTarget>,
    /// The node's report history (`None`: reports answer 503).
    pub history: Option<Arc<History>>,
    pub clock: Arc<dyn Clock>,
    /// Checks that get per-check series on `/metrics`.
    pub metrics_checks_max: usize,
}

pub fn router(s: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .route("/api/v1/status", get(status))
        .route("/api/v1/status/{name}", get(check_status))
        .route("/api/v1/checks/{name}/series", get(read_api::series))
        .route("/api/v1/reports/availability", get(read_api::availability))
        .route("/api/v1/reports/results", get(read_api::results))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/incidents/{id}", get(incident))
        .route("/api/v1/incidents/{id}/ack", post(ack_incident))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/cluster/members", post(add_member))
        .route("/api/v1/cluster/members/{id}", delete(remove_member))
        .route("/api/v1/cluster/members/{id}/promote", post(promote_member))
        .route("/api/v1/cluster/leader", post(transfer_leader))
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/recoveries", get(recoveries))
        .route("/api/v1/silences", get(silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(remove_silence))
        .route(
            "/api/v1/checks",
            get(checks).put(apply_checks).post(apply_checks),
        )
        .route("/api/v1/snapshot", get(snapshot_save))
        .route(
            "/api/v1/snapshot/restore",
            post(snapshot_restore).layer(DefaultBodyLimit::max(SNAPSHOT_BYTES_MAX)),
        )
        .route("/api/v1/demo", get(demo_state))
        .route("/api/v1/demo/break", post(demo_break))
        .route("/api/v1/demo/heal", post(demo_heal))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(CHECKS_FILE_BYTES_MAX))
        .with_state(s)
}

/// Unknown paths, as a JSON error.
async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint: {}", uri.path()),
        json!(null),
    )
}

/// A JSON error with a stable code: `{"error": {"code", "message", "details"}}`.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: serde_json::Value,
) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into(), "details": details } });
    (status, Json(body)).into_response()
}

/// A JSON request body, or the `400 invalid_request` answer that says what it must hold.
#[allow(clippy::result_large_err)] // The handler's early answer, made once per bad request.
fn json_request<T: serde::de::DeserializeOwned>(body: &[u8], takes: &str) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body must be JSON with {takes}: {e}"),
            json!(null),
        )
    })
}

fn authorized(s: &ApiState, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ") else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), s.token.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The dashboard: one self-contained page; the policy keeps it from loading anything but
/// this node's own API (it works air-gapped).
async fn dashboard() -> Response {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; style-src 'self' 'unsafe-inline'; \
             script-src 'self' 'unsafe-inline'; img-src 'self' data:",
        )],
        Html(include_str!("dashboard.html")),
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    let leader = s.raft.metrics().borrow().current_leader;
    match leader {
        Some(id) => (StatusCode::OK, format!("ready: leader is node {id}\n")).into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader known\n",
        )
            .into_response(),
    }
}

async fn prometheus(State(s): State<Arc<ApiState>>) -> Response {
    let Some(handle) = &s.metrics else {
        return (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response();
    };
    {
        let m = s.raft.metrics().borrow().clone();
        #[allow(clippy::cast_precision_loss)]
        {
            ::metrics::gauge!(metrics::RAFT_TERM).set(m.current_term as f64);
            ::metrics::gauge!(metrics::RAFT_LAST_LOG_INDEX)
                .set(m.last_log_index.unwrap_or(0) as f64);
            ::metrics::gauge!(metrics::RAFT_APPLIED_INDEX)
                .set(m.last_applied.map_or(0, |l| l.index) as f64);
            ::metrics::gauge!(metrics::RAFT_IS_LEADER).set(
                if m.current_leader == Some(s.node_id) {
                    1.0
                } else {
                    0.0
                },
            );
            s.state
                .read(|st| metrics::StateFigures::take(st, s.metrics_checks_max))
                .export();
            let membership = m.membership_config.membership();
            let voters = membership.voter_ids().count();
            let all = membership.nodes().count();
            ::metrics::gauge!(metrics::CLUSTER_MEMBERS, "role" => "voter").set(voters as f64);
            ::metrics::gauge!(metrics::CLUSTER_MEMBERS, "role" => "learner")
                .set(all.saturating_sub(voters) as f64);
            for (id, _) in membership.nodes() {
                if let Some(lag) = consentry_cluster::membership::lag_of(&m, *id) {
                    ::metrics::gauge!(metrics::RAFT_REPLICATION_LAG_ENTRIES, "peer" => id.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
    let dir = s.data_dir.clone();
    if let Ok(bytes) = tokio::task::spawn_blocking(move || crate::data_dir::size(&dir)).await {
        #[allow(clippy::cast_precision_loss)]
        ::metrics::gauge!(metrics::DATA_DIR_BYTES).set(bytes as f64);
    }
    if let Some(h) = s.history.clone() {
        if let Ok(bytes) = tokio::task::spawn_blocking(move || h.size_on_disk()).await {
            #[allow(clippy::cast_precision_loss)]
            ::metrics::gauge!(metrics::HISTORY_BYTES).set(bytes as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

async fn status(State(s): State<Arc<ApiState>>, ApiQuery(o): ApiQuery<ReadOpts>) -> Response {
    if let Err(r) = read_through_leader(&s, o.consistent).await {
        return r;
    }
    Json(s.state.read(views::status)).into_response()
}

/// `GET /api/v1/status/{name}`: one check's status, each site's latest result and the
/// agreed verdict.
async fn check_status(
    State(s): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(o): ApiQuery<ReadOpts>,
) -> Response {
    if let Err(r) = read_through_leader(&s, o.consistent).await {
        return r;
    }
    match s.state.read(|st| views::check_status(st, &name)) {
        Some(v) => Json(v).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no check {name:?} in the applied catalog"),
            json!(null),
        ),
    }
}

#[derive(Deserialize)]
struct IncidentsQuery {
    #[serde(default)]
    open: bool,
    limit: Option<usize>,
    #[serde(default)]
    consistent: bool,
}

async fn incidents(
    State(s): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<IncidentsQuery>,
) -> Response {
    if let Err(r) = read_through_leader(&s, q.consistent).await {
        return r;
    }
    let limit = q
        .limit
        .unwrap_or(INCIDENTS_PAGE_MAX)
        .min(INCIDENTS_PAGE_MAX);
    let body = s
        .state
        .read(|st| serde_json::to_value(views::incidents(st, q.open, limit)));
    match body {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
            json!(null),
        ),
    }
}

async fn incident(
    State(s): State<Arc<ApiState>>,
    ApiPath(id): ApiPath<u64>,
    ApiQuery(o): ApiQuery<ReadOpts>,
) -> Response {
    if let Err(r) = read_through_leader(&s, o.consistent).await {
        return r;
    }
    let body = s
        .state
        .read(|st| views::incident(st, id).map(serde_json::to_value));
    match body {
        Some(Ok(v)) => Json(v).into_response(),
        Some(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
            json!(null),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no incident {id} (closed incidents are kept up to a bound)"),
            json!(null),
        ),
    }
}

/// `GET /api/v1/cluster`; with `?consistent=true` a follower also shows the leader's view
/// of each member's replication lag.
async fn cluster(State(s): State<Arc<ApiState>>, ApiQuery(o): ApiQuery<ReadOpts>) -> Response {
    let read = match read_through_leader(&s, o.consistent).await {
        Ok(read) => read,
        Err(r) => return r,
    };
    let mut view = views::cluster(&s.raft, s.writer.dialer(), s.node_id, &s.site);
    if let Some(read) = read {
        for m in &mut view.members {
            if m.lag.is_none() {
                m.lag = read
                    .lags
                    .iter()
                    .find(|(id, _)| *id == m.id)
                    .map(|(_, l)| *l);
            }
        }
    }
    Json(view).into_response()
}

async fn checks(State(s): State<Arc<ApiState>>, ApiQuery(o): ApiQuery<ReadOpts>) -> Response {
    if let Err(r) = read_through_leader(&s, o.consistent).await {
        return r;
    }
    // Passwords are replicated to every prober but never shown to readers.
    let body = s.state.read(|st| {
        let checks: Vec<_> = st.catalog.checks.iter().map(|c| c.redacted()).collect();
        json!({
            "catalog_index": st.catalog_index,
            "checks": checks,
            "notifiers": st.catalog.notifiers.iter().map(|n| n.redacted()).collect::<Vec<_>>(),
            "operator_notify": st.catalog.operator_notify,
        })
    });
    Json(body).into_response()
}

async fn apply_checks(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <contents of api.token>)",
            json!(null),
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_config",
            "the checks file is not UTF-8",
            json!([]),
        );
    };
    let catalog = match checks_file::parse(text) {
        Ok(c) => c,
        Err(problems) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_config",
                format!(
                    "{} problem(s) in the checks file; nothing was changed",
                    problems.len()
                ),
                json!(problems),
            )
        }
    };
    let (checks, notifiers) = (catalog.checks.len(), catalog.notifiers.len());
    match s.writer.write(Command::ApplyCatalog(catalog)).await {
        Ok(_) => Json(json!({ "applied": true, "checks": checks, "notifiers": notifiers }))
            .into_response(),
        Err(WriteError::Rejected(why)) => {
            error(StatusCode::BAD_REQUEST, "rejected", why, json!(null))
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_quorum",
            e.to_string(),
            json!(null),
        ),
    }
}

/// `GET /api/v1/agents`: every host agent that reported, by name (reports applied, gaps in
/// their sequence, the node the last one came through).
async fn agents(State(s): State<Arc<ApiState>>) -> Response {
    Json(s.state.read(|st| st.agents.clone())).into_response()
}

/// `GET /api/v1/recoveries`: recovery steps, active and recently settled, oldest first.
async fn recoveries(State(s): State<Arc<ApiState>>) -> Response {
    Json(
        s.state
            .read(|st| st.recoveries.values().cloned().collect::<Vec<_>>()),
    )
    .into_response()
}

async fn silences(State(s): State<Arc<ApiState>>, ApiQuery(o): ApiQuery<ReadOpts>) -> Response {
    if let Err(r) = read_through_leader(&s, o.consistent).await {
        return r;
    }
    Json(s.state.read(views::silences)).into_response()
}

/// `POST /api/v1/silences`: a window given by `start` (default: the cluster's current time,
/// the leader's last tick) and either `end` or `for`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSilence {
    /// A check name, a glob over names, or `label=value`.
    #[serde(rename = "match")]
    matcher: String,
    reason: String,
    /// RFC 3339.
    start: Option<String>,
    /// RFC 3339.
    end: Option<String>,
    /// A duration from `start`: `"30m"`, `"2h"`.
    #[serde(rename = "for")]
    duration: Option<String>,
}

fn unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required (Authorization: Bearer <contents of api.token>)",
        json!(null),
    )
}

/// `GET /api/v1/snapshot` (token required: it holds the catalog's secrets): this node's
/// applied catalog, silences and incident history as a snapshot file.
async fn snapshot_save(State(s): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let file = s.state.read(|st| SnapshotFile {
        cluster_ca_sha256: s.cluster_ca_sha256.clone(),
        node_id: s.node_id,
        applied_index: st.last_index,
        taken_at_ms: st.wall_ms,
        backup: st.backup(),
    });
    match snapshot_file::encode(&file) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "snapshot_too_large",
            e.to_string(),
            json!(null),
        ),
    }
}

/// `POST /api/v1/snapshot/restore` (token required): restores a snapshot file into this
/// cluster through raft; refused unless the cluster is fresh (no catalog, silence or
/// incident).
async fn snapshot_restore(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let file = match snapshot_file::decode(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_snapshot",
                e.to_string(),
                json!(null),
            )
        }
    };
    let summary = json!({
        "checks": file.backup.catalog.checks.len(),
        "notifiers": file.backup.catalog.notifiers.len(),
        "silences": file.backup.silences.len(),
        "incidents": file.backup.incidents.len(),
        "from_cluster_ca_sha256": file.cluster_ca_sha256,
        "from_node": file.node_id,
        "from_applied_index": file.applied_index,
    });
    match s
        .writer
        .write(Command::Restore(Box::new(file.backup)))
        .await
    {
        Ok(_) => Json(json!({ "restored": summary })).into_response(),
        Err(WriteError::Rejected(why)) => {
            error(StatusCode::CONFLICT, "not_fresh", why, json!(null))
        }
        Err(e) => write_failed(e),
    }
}

fn write_failed(e: WriteError) -> Response {
    match e {
        WriteError::Rejected(why) => error(StatusCode::BAD_REQUEST, "rejected", why, json!(null)),
        e => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_quorum",
            e.to_string(),
            json!(null),
        ),
    }
}

/// Resolves a silence request against the cluster's current time `now_ms`.
fn silence_spec(req: &NewSilence, now_ms: u64) -> Result<SilenceSpec, String> {
    let matcher = Matcher::parse(&req.matcher)?;
    let start_ms = match &req.start {
        Some(t) => wall_time::parse_rfc3339(t)?,
        None if now_ms == 0 => {
            return Err(
                "the cluster has not ticked yet, so it has no current time: give start".into(),
            )
        }
        None => now_ms,
    };
    let end_ms = match (&req.end, &req.duration) {
        (Some(t), None) => wall_time::parse_rfc3339(t)?,
        (None, Some(d)) => start_ms.saturating_add(crate::duration::parse_ms(d)?),
        (Some(_), Some(_)) => return Err("give end or for, not both".into()),
        (None, None) => return Err("give end (RFC 3339) or for (a duration like \"2h\")".into()),
    };
    let spec = SilenceSpec {
        matcher,
        start_ms,
        end_ms,
        reason: req.reason.clone(),
    };
    spec.validate()?;
    Ok(spec)
}

async fn add_silence(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let req: NewSilence = match json_request(&body, "match, reason, and end or for") {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let now_ms = s.state.read(|st| st.wall_ms);
    let spec = match silence_spec(&req, now_ms) {
        Ok(spec) => spec,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why, json!(null)),
    };
    match s.writer.write(Command::AddSilence(spec.clone())).await {
        Ok(CommandResponse::Created(id)) => (
            StatusCode::CREATED,
            Json(json!({
                "id": id,
                "match": spec.matcher.to_string(),
                "start_ms": spec.start_ms,
                "end_ms": spec.end_ms,
                "start": wall_time::format_rfc3339(spec.start_ms),
                "end": wall_time::format_rfc3339(spec.end_ms),
            })),
        )
            .into_response(),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected answer {other:?}"),
            json!(null),
        ),
        Err(e) => write_failed(e),
    }
}

async fn remove_silence(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    if !s.state.read(|st| st.silences.contains_key(&id)) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no silence {id} (it may have ended and been pruned)"),
            json!(null),
        );
    }
    match s.writer.write(Command::RemoveSilence { id }).await {
        Ok(_) => Json(json!({ "removed": id })).into_response(),
        Err(e) => write_failed(e),
    }
}

/// `POST /api/v1/cluster/members`: a node to add as a learner.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    id: u64,
    addr: String,
    site: String,
    /// False: a witness (votes once promoted, never probes).
    #[serde(default = "crate::config::yes")]
    probe: bool,
    /// The node's API base URL, for operators.
    #[serde(default)]
    api: String,
}

/// `POST /api/v1/cluster/leader`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLeader {
    node_id: u64,
}

async fn add_member(State(s): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let req: NewMember = match json_request(&body, "id, addr, site, and optional probe and api") {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    if let Err(why) = crate::config::check_member_api(&req.api) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("api: {why}"),
            json!(null),
        );
    }
    if req.addr.parse::<std::net::SocketAddr>().is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "addr {:?} is not IP:PORT (the new node's listen_raft)",
                req.addr
            ),
            json!(null),
        );
    }
    let node = ClusterNode {
        addr: req.addr,
        site: req.site,
        probe: req.probe,
        api: req.api,
    };
    admin(&s, AdminRequest::AddLearner { id: req.id, node }).await
}

async fn promote_member(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
) -> Response {
    admin_with_token(&s, &headers, AdminRequest::Promote { id }).await
}

async fn remove_member(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
) -> Response {
    admin_with_token(&s, &headers, AdminRequest::Remove { id }).await
}

async fn admin_with_token(s: &ApiState, headers: &HeaderMap, request: AdminRequest) -> Response {
    if !authorized(s, headers) {
        return unauthorized();
    }
    admin(s, request).await
}

async fn transfer_leader(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let req: NewLeader = match json_request(&body, "node_id") {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    admin(&s, AdminRequest::TransferLeader { to: req.node_id }).await
}

async fn admin(s: &ApiState, request: AdminRequest) -> Response {
    match s.writer.admin(request).await {
        Ok(message) => Json(json!({ "ok": true, "message": message })).into_response(),
        Err(AdminError::Refused(why)) => error(StatusCode::CONFLICT, "refused", why, json!(null)),
        Err(e @ AdminError::NotLeader { .. }) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            format!("no leader could be found ({e}); nothing was changed"),
            json!(null),
        ),
        Err(e @ AdminError::Unreachable { .. }) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "leader_unreachable",
            e.to_string(),
            json!(null),
        ),
        Err(e @ AdminError::Raft(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_quorum",
            e.to_string(),
            json!(null),
        ),
    }
}

/// `POST /api/v1/incidents/{id}/ack`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAck {
    by: String,
    #[serde(default)]
    comment: String,
}

async fn ack_incident(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    ApiPath(id): ApiPath<u64>,
    body: Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let req: NewAck = match json_request(&body, "by and an optional comment") {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    if !s.state.read(|st| st.incidents.contains_key(&id)) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no incident {id}"),
            json!(null),
        );
    }
    let cmd = Command::Ack {
        incident_id: id,
        by: req.by,
        comment: req.comment,
    };
    match s.writer.write(cmd).await {
        Ok(_) => Json(json!({ "acknowledged": id })).into_response(),
        Err(e) => write_failed(e),
    }
}

async fn demo_state(State(s): State<Arc<ApiState>>) -> Response {
    match &s.demo {
        Some(d) => Json(json!({ "target": d.url(), "broken": d.is_broken() })).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_demo",
            "this node is not running `consentry demo`",
            json!(null),
        ),
    }
}

async fn demo_break(State(s): State<Arc<ApiState>>) -> Response {
    demo_set(&s, true)
}

async fn demo_heal(State(s): State<Arc<ApiState>>) -> Response {
    demo_set(&s, false)
}

fn demo_set(s: &ApiState, broken: bool) -> Response {
    match &s.demo {
        Some(d) => {
            d.set_broken(broken);
            Json(json!({ "target": d.url(), "broken": broken })).into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "not_demo",
            "this node is not running `consentry demo`",
            json!(null),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_requests_resolve_against_the_cluster_time() {
        const NOW: u64 = 1_795_226_400_000; // 2026-11-21T02:00:00Z
        let req = |start: Option<&str>, end: Option<&str>, duration: Option<&str>| NewSilence {
            matcher: "web-*".into(),
            reason: "upgrade".into(),
            start: start.map(Into::into),
            end: end.map(Into::into),
            duration: duration.map(Into::into),
        };
        // (case, request, now, expected window)
        let table = [
            (
                "for from now",
                req(None, None, Some("2h")),
                NOW,
                Some((NOW, NOW + 7_200_000)),
            ),
            (
                "explicit window with an offset",
                req(
                    Some("2026-11-21T11:00:00+09:00"),
                    Some("2026-11-21T04:00:00Z"),
                    None,
                ),
                0,
                Some((NOW, NOW + 7_200_000)),
            ),
            (
                "start and for",
                req(Some("2026-11-21T02:00:00Z"), None, Some("30m")),
                0,
                Some((NOW, NOW + 1_800_000)),
            ),
            ("no end", req(None, None, None), NOW, None),
            (
                "end and for",
                req(None, Some("2026-11-21T04:00:00Z"), Some("2h")),
                NOW,
                None,
            ),
            ("no cluster time yet", req(None, None, Some("2h")), 0, None),
            (
                "ends before it starts",
                req(
                    Some("2026-11-21T02:00:00Z"),
                    Some("2026-11-21T01:00:00Z"),
                    None,
                ),
                0,
                None,
            ),
            ("bad time", req(Some("2am"), None, Some("2h")), NOW, None),
        ];
        for (name, r, now, want) in table {
            let got = silence_spec(&r, now).ok().map(|s| (s.start_ms, s.end_ms));
            assert_eq!(got, want, "{name}");
        }
    }
}
