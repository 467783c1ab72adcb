//! The read side beyond the applied state: consistent reads through the leader, and the
//! report history's endpoints (availability reports, per-result downloads, latency
//! series). docs/api.md and docs/reports.md describe them.

// The helpers return the handler's early answer (a `Response`) as their error, once per
// bad request; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use consentry_cluster::membership::{self, AdminError, LeaderRead};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

use crate::api::{error, ApiState};
use crate::history::store::{DAY_MS, HOUR_MS, MINUTE_MS, RAW_READ_MAX};
use crate::history::{report, ReportQuery};
use crate::wall_time;

/// How long a consistent read waits for the leader and for this node to apply.
pub const CONSISTENT_READ_TIMEOUT_MS: u64 = 5_000;
/// Longest period one report covers.
pub const REPORT_PERIOD_MS_MAX: u64 = 400 * DAY_MS;
/// Points per site one series answer holds at most.
pub const SERIES_POINTS_MAX: u64 = 2_000;

/// `Query` whose rejection is the API's JSON error (`400 invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
                json!(null),
            )),
        }
    }
}

/// `Path` whose rejection is the API's JSON error (`400 invalid_path`).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                e.body_text(),
                json!(null),
            )),
        }
    }
}

/// `?consistent=true` on any read.
#[derive(Debug, Default, Deserialize)]
pub struct ReadOpts {
    #[serde(default)]
    pub consistent: bool,
}

/// A consistent read: the leader confirms it still leads and names its read index, and this
/// node waits until it has applied that index, so the answer reflects every write committed
/// before the request. `None` when `consistent` is false.
///
/// # Errors
/// The response to send instead: `503 no_leader`, `503 leader_unreachable`,
/// `504 read_timeout`.
pub async fn read_through_leader(
    s: &ApiState,
    consistent: bool,
) -> Result<Option<LeaderRead>, Response> {
    if !consistent {
        return Ok(None);
    }
    let unavailable = |code: &str, msg: String| {
        Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            msg,
            json!(null),
        ))
    };
    let timeout = Duration::from_millis(CONSISTENT_READ_TIMEOUT_MS);
    let m = s.raft.metrics().borrow().clone();
    let read = match m.current_leader {
        None => return unavailable("no_leader", "no leader is known; retry shortly".into()),
        Some(leader) if leader == s.node_id => membership::read_index(&s.raft).await,
        Some(leader) => {
            let Some(node) = m.membership_config.membership().get_node(&leader).cloned() else {
                return unavailable("no_leader", format!("leader {leader} is not a member"));
            };
            match s.writer.read_index(leader, &node, timeout).await {
                Ok(answer) => answer,
                Err(e) => {
                    return unavailable(
                        "leader_unreachable",
                        format!("asking leader {leader} for a read index failed: {e}"),
                    )
                }
            }
        }
    };
    let read = match read {
        Ok(read) => read,
        Err(AdminError::NotLeader { leader, .. }) => {
            return unavailable(
                "no_leader",
                format!(
                    "leadership moved (now {}); retry",
                    leader.map_or("unknown".to_string(), |(id, _)| id.to_string())
                ),
            )
        }
        Err(e) => return unavailable("no_leader", e.to_string()),
    };
    let mut applied = s.state.subscribe();
    let caught_up = tokio::time::timeout(timeout, applied.wait_for(|i| *i >= read.index)).await;
    match caught_up {
        Ok(Ok(_)) => Ok(Some(read)),
        _ => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            "read_timeout",
            format!(
                "this node did not apply the leader's read index {} within {CONSISTENT_READ_TIMEOUT_MS} ms",
                read.index
            ),
            json!(null),
        )),
    }
}

/// A time given as RFC 3339 or epoch milliseconds.
fn time_param(name: &str, v: &str) -> Result<u64, Response> {
    if let Ok(ms) = v.trim().parse::<u64>() {
        return Ok(ms);
    }
    wall_time::parse_rfc3339(v).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{name}: {e}, or milliseconds since the epoch"),
            json!(null),
        )
    })
}

/// `[start, end)` of calendar month `YYYY-MM` at UTC offset `offset` (`+09:00`).
///
/// # Errors
/// A message naming the expected forms.
pub fn month_range(month: &str, offset: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid month {month:?}: expected YYYY-MM, e.g. 2026-10");
    let (y, m) = month.trim().split_once('-').ok_or_else(bad)?;
    let (y, m): (u32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1970..=9998).contains(&y) || !(1..=12).contains(&m) {
        return Err(bad());
    }
    let off = match offset.trim() {
        o if o.eq_ignore_ascii_case("utc") => "Z",
        o => o,
    };
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    // The offset is checked by the RFC 3339 parser itself.
    let at = |y: u32, m: u32| {
        wall_time::parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00{off}")).map_err(|_| {
            format!("invalid UTC offset {offset:?}: expected +HH:MM or -HH:MM (e.g. +09:00) or Z")
        })
    };
    Ok((at(y, m)?, at(ny, nm)?))
}

#[derive(Debug, Deserialize)]
pub struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    /// `YYYY-MM`: the calendar month (at `tz`), instead of from/to.
    month: Option<String>,
    /// UTC offset for `month` (default `Z`).
    tz: Option<String>,
    /// Comma-separated check names.
    check: Option<String>,
    /// `key=value`.
    label: Option<String>,
    format: Option<String>,
    #[serde(default)]
    consistent: bool,
}

fn period(
    from: Option<&str>,
    to: Option<&str>,
    now: u64,
    default_span: u64,
) -> Result<(u64, u64), Response> {
    let to = match to {
        Some(v) => time_param("to", v)?,
        None => now,
    };
    let from = match from {
        Some(v) => time_param("from", v)?,
        None => to.saturating_sub(default_span),
    };
    if from >= to {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "from must be before to",
            json!(null),
        ));
    }
    Ok((from, to))
}

fn history_of(s: &ApiState) -> Result<&Arc<crate::history::History>, Response> {
    s.history.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_history",
            "this node keeps no report history",
            json!(null),
        )
    })
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        e.to_string(),
        json!(null),
    )
}

/// `GET /api/v1/reports/availability`.
pub async fn availability(
    State(s): State<Arc<ApiState>>,
    ApiQuery(p): ApiQuery<ReportParams>,
) -> Result<Response, Response> {
    let s = &*s;
    let history = history_of(s)?.clone();
    let now = s.clock.wall_ms();
    let (from, to) = match &p.month {
        Some(month) => month_range(month, p.tz.as_deref().unwrap_or("Z"))
            .map_err(|e| error(StatusCode::BAD_REQUEST, "invalid_query", e, json!(null)))?,
        None => period(p.from.as_deref(), p.to.as_deref(), now, 30 * DAY_MS)?,
    };
    if to - from > REPORT_PERIOD_MS_MAX {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "the period is {} days; a report covers at most {} days",
                (to - from) / DAY_MS,
                REPORT_PERIOD_MS_MAX / DAY_MS
            ),
            json!(null),
        ));
    }
    let label = match &p.label {
        None => None,
        Some(l) => Some(
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("label {l:?}: expected key=value"),
                        json!(null),
                    )
                })?,
        ),
    };
    let checks: Vec<String> = p
        .check
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from)
        .collect();
    read_through_leader(s, p.consistent).await?;
    let catalog = s.state.read(|st| st.catalog.checks.clone());
    for c in &checks {
        if !catalog.iter().any(|spec| &spec.name == c) {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no check {c:?} in the applied catalog"),
                json!(null),
            ));
        }
    }
    let q = ReportQuery {
        from_ms: from,
        to_ms: to,
        checks,
        label,
    };
    let r = tokio::task::spawn_blocking(move || report::availability(&history, &catalog, &q, now))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    match p.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(r).into_response()),
        "csv" => Ok(csv_response(availability_csv(&r), "availability.csv")),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("format {other:?}: use json or csv"),
            json!(null),
        )),
    }
}

/// Text from a target (a result message) for a CSV cell: a leading `=`, `+`, `-` or `@`
/// gets a `'` so a spreadsheet shows it instead of evaluating it.
fn csv_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) {
        csv_field(&format!("'{s}"))
    } else {
        csv_field(s)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// One line per check: the agreed figures, then each site's raw availability.
pub fn availability_csv(r: &report::AvailabilityReport) -> String {
    let mut out = String::from(
        "check,from,to,availability_percent,downtime_seconds,maintenance_seconds,\
         maintenance_downtime_seconds,incidents,mttd_seconds,mttr_seconds,site_availability\n",
    );
    for c in &r.checks {
        let sites: Vec<String> = c
            .sites
            .iter()
            .map(|s| {
                format!(
                    "{}={}",
                    s.site,
                    s.availability_percent
                        .map_or(String::new(), |p| format!("{p:.4}"))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{},{},{},{}",
            csv_field(&c.check),
            wall_time::format_rfc3339(r.from_ms),
            wall_time::format_rfc3339(r.until_ms),
            c.availability_percent
                .map_or(String::new(), |p| format!("{p:.4}")),
            secs(c.downtime_ms),
            secs(c.maintenance_ms),
            secs(c.maintenance_downtime_ms),
            c.incidents,
            opt(c.mean_time_to_detect_ms.map(|v| format!("{:.3}", secs(v)))),
            opt(c.mean_time_to_recover_ms.map(|v| format!("{:.3}", secs(v)))),
            csv_field(&sites.join(";")),
        );
    }
    out
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn csv_response(body: String, filename: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The JSON form of `reports/results`.
#[derive(serde::Serialize)]
struct ResultsDoc<'a> {
    check: &'a str,
    from_ms: u64,
    to_ms: u64,
    truncated: bool,
    results: &'a [crate::history::store::RawResult],
}

#[derive(Debug, Deserialize)]
pub struct ResultsParams {
    check: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/reports/results?check=NAME`: every recorded result of one check (default:
/// the last 10 days), as CSV or JSON.
pub async fn results(
    State(s): State<Arc<ApiState>>,
    ApiQuery(p): ApiQuery<ResultsParams>,
) -> Result<Response, Response> {
    let s = &*s;
    let history = history_of(s)?.clone();
    let Some(check) = p.check.filter(|c| !c.is_empty()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "check is required: /api/v1/reports/results?check=NAME",
            json!(null),
        ));
    };
    let raw_days = history.retention().raw_days;
    let now = s.clock.wall_ms();
    let (from, to) = period(p.from.as_deref(), p.to.as_deref(), now, raw_days * DAY_MS)?;
    // No result is recorded from beyond now (plus clock skew); the store reads one key per
    // minute, so a far-future `to` is cut here.
    let to = to.min(now + HOUR_MS).max(from + 1);
    let limit = p.limit.unwrap_or(RAW_READ_MAX).min(RAW_READ_MAX);
    let name = check.clone();
    let (rows, truncated) =
        tokio::task::spawn_blocking(move || history.raw(&name, from, to, limit))
            .await
            .map_err(internal)?
            .map_err(internal)?;
    if rows.is_empty() && !s.state.read(|st| st.check(&check).is_some()) {
        // A removed check's rows are still served while they last; a typo is not an
        // empty download.
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no check {check:?} in the applied catalog, and no results recorded"),
            json!(null),
        ));
    }
    match p.format.as_deref().unwrap_or("csv") {
        "csv" => {
            let mut out = String::from("observed_at,check,site,status,reason,latency_ms,message\n");
            for r in &rows {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{}",
                    wall_time::format_rfc3339_millis(r.observed_at_ms),
                    csv_field(&check),
                    csv_field(&r.site),
                    r.status.as_str(),
                    r.reason,
                    r.latency_ms,
                    csv_text(&r.message)
                );
            }
            let mut resp = csv_response(out, &format!("{check}-results.csv"));
            if truncated {
                resp.headers_mut().insert(
                    "x-consentry-truncated",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            Ok(resp)
        }
        // Serialized from the rows as they are: up to RAW_READ_MAX of them, never a second
        // copy as a JSON tree.
        "json" => Ok(Json(ResultsDoc {
            check: &check,
            from_ms: from,
            to_ms: to,
            truncated,
            results: &rows,
        })
        .into_response()),
        other => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("format {other:?}: use csv or json"),
            json!(null),
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct SeriesParams {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/checks/{name}/series`: per site, minute buckets (hour buckets past
/// [`SERIES_POINTS_MAX`] minutes) of result counts and latency, for charts.
pub async fn series(
    State(s): State<Arc<ApiState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(p): ApiQuery<SeriesParams>,
) -> Result<Response, Response> {
    let s = &*s;
    let history = history_of(s)?.clone();
    if !s.state.read(|st| st.check(&name).is_some()) {
        return Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no check {name:?} in the applied catalog"),
            json!(null),
        ));
    }
    let (from, to) = period(
        p.from.as_deref(),
        p.to.as_deref(),
        s.clock.wall_ms(),
        6 * HOUR_MS,
    )?;
    let Some(step) = series_step(to - from) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!(
                "the period is too long for one series: at most {SERIES_POINTS_MAX} hours (the reports endpoint covers longer periods)"
            ),
            json!(null),
        ));
    };
    let check = name.clone();
    let sites = tokio::task::spawn_blocking(move || history.series(&check, from, to, step))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let sites: Vec<_> = sites
        .into_iter()
        .map(|(site, points)| {
            let points: Vec<_> = points
                .into_iter()
                .map(|(t, b)| {
                    json!({
                        "t_ms": t,
                        "n": b.n,
                        "up": b.up,
                        "avg_ms": (b.avg_ms() * 10.0).round() / 10.0,
                        "max_ms": b.latency_max_ms,
                    })
                })
                .collect();
            json!({ "site": site, "points": points })
        })
        .collect();
    Ok(Json(json!({
        "check": name,
        "from_ms": from,
        "to_ms": to,
        "step_ms": step,
        "sites": sites,
    }))
    .into_response())
}

/// The bucket of a series over `span` ms: minutes while they are at most
/// [`SERIES_POINTS_MAX`] points, else hours; `None` past that many hours.
fn series_step(span: u64) -> Option<u64> {
    [MINUTE_MS, HOUR_MS]
        .into_iter()
        .find(|step| span.div_ceil(*step) <= SERIES_POINTS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_has_minutes_while_they_fit_then_hours() {
        assert_eq!(series_step(6 * HOUR_MS), Some(MINUTE_MS));
        assert_eq!(series_step(SERIES_POINTS_MAX * MINUTE_MS), Some(MINUTE_MS));
        // 33 to 48 hours were refused when minutes were chosen by a 2-day rule.
        assert_eq!(series_step(40 * HOUR_MS), Some(HOUR_MS));
        assert_eq!(series_step(7 * DAY_MS), Some(HOUR_MS));
        assert_eq!(series_step(SERIES_POINTS_MAX * HOUR_MS + 1), None);
    }

    #[test]
    fn months_at_an_offset() {
        let (a, b) = month_range("2026-10", "+09:00").unwrap();
        assert_eq!(wall_time::format_rfc3339(a), "2026-09-30T15:00:00Z");
        assert_eq!(wall_time::format_rfc3339(b), "2026-10-31T15:00:00Z");
        let (a, b) = month_range("2026-12", "Z").unwrap();
        assert_eq!(wall_time::format_rfc3339(a), "2026-12-01T00:00:00Z");
        assert_eq!(wall_time::format_rfc3339(b), "2027-01-01T00:00:00Z");
        assert!(month_range("2026-13", "Z").is_err());
        assert!(month_range("2026-10", "+9").is_err());
        let (a, _) = month_range("2026-10", "-05:30").unwrap();
        assert_eq!(wall_time::format_rfc3339(a), "2026-10-01T05:30:00Z");
        assert!(month_range("2026-10", "+24:00").is_err());
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("HTTP 200"), "HTTP 200");
    }
}
