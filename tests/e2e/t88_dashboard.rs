//! The dashboard in a real browser. Headless Chromium, driven over WebDriver, opens the
//! page a real `consentry demo` serves and follows the real cluster: the grid of checks
//! and sites, an outage that turns the cells CRITICAL and opens an incident without a page
//! reload, the incident's timeline, the check's latency chart, the cluster's members, and
//! the heal. A screenshot of each page is saved for a human to look at
//! (`$CONSENTRY_SCREENSHOT_DIR`, else `target/e2e-screenshots/`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::browser::{self, Browser};
use crate::harness::demo::{http, Demo, DEMO_ALERT_TIMEOUT, DEMO_READY_TIMEOUT};
use crate::harness::{skip_unless_required, wait_until};

/// The page as the binary serves it.
const DASHBOARD: &str = include_str!("../../node/src/dashboard.html");
/// The demo's checks and the sites that probe them (site-c is a witness).
const CHECKS: [&str; 2] = ["demo-web", "demo-port"];
const PROBING: [&str; 2] = ["site-a", "site-b"];
/// A page switch renders at its next refresh (every 2 s) at the latest.
const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// The check page asks for the latency history at once, then every 15 s.
const CHART_TIMEOUT: Duration = Duration::from_secs(20);

/// What the page shows, read through the DOM contract (ids and data attributes).
const READ_PAGE: &str = r"
const q = (s) => Array.from(document.querySelectorAll(s));
const banner = document.getElementById('conn-error');
return {
  no_reload: window.__noReload === 1,
  updated_ms: Number(document.body.getAttribute('data-updated-ms') || 0),
  offline: banner && !banner.hidden ? banner.textContent : null,
  csp_violations: window.__cspViolations || [],
  demo_shown: !document.getElementById('demo').hidden,
  cells: q('#grid td[data-check][data-site]').map(td => [td.dataset.check, td.dataset.site, td.dataset.status]),
  agreed: q('#grid td[data-check][data-verdict]').map(td => [td.dataset.check, td.dataset.verdict]),
  incidents: q('#incidents [data-incident-id]').map(tr => [tr.dataset.incidentId, tr.dataset.check, tr.dataset.state]),
  timeline: q('#incident-page #timeline [data-kind]').map(li => [li.dataset.kind, li.textContent]),
  incident_state: (document.getElementById('incident-page') || { dataset: {} }).dataset.state || null,
  chart_paths: q('#check-page svg#latency-chart path[data-site]').map(p => [p.dataset.site, (p.getAttribute('d') || '').length]),
  chart_text: q('#check-page svg#latency-chart text.msg').map(t => t.textContent).join(' '),
  check_verdict: (document.getElementById('check-page') || { dataset: {} }).dataset.verdict || null,
  nodes: q('#cluster-page tr[data-node-id]').map(tr => [tr.dataset.nodeId, tr.dataset.role, tr.dataset.leader]),
};
";

#[derive(Debug, Deserialize)]
struct Page {
    no_reload: bool,
    updated_ms: u64,
    offline: Option<String>,
    csp_violations: Vec<String>,
    demo_shown: bool,
    cells: Vec<(String, String, String)>,
    agreed: Vec<(String, String)>,
    incidents: Vec<(String, String, String)>,
    timeline: Vec<(String, String)>,
    incident_state: Option<String>,
    chart_paths: Vec<(String, usize)>,
    chart_text: String,
    check_verdict: Option<String>,
    nodes: Vec<(String, String, String)>,
}

impl Page {
    /// Every demo check's cell at every probing site has `status`, and the cells are
    /// exactly those (no column for the witness).
    fn all_cells(&self, status: &str) -> bool {
        let want: BTreeSet<(&str, &str)> = CHECKS
            .iter()
            .flat_map(|c| PROBING.iter().map(move |s| (*c, *s)))
            .collect();
        let seen: BTreeSet<(&str, &str)> = self
            .cells
            .iter()
            .map(|(c, s, _)| (c.as_str(), s.as_str()))
            .collect();
        seen == want && self.cells.iter().all(|(_, _, st)| st == status)
    }

    fn agreed(&self, check: &str) -> Option<&str> {
        self.agreed
            .iter()
            .find(|(c, _)| c == check)
            .map(|(_, v)| v.as_str())
    }

    fn incident(&self, id: &str) -> Option<&str> {
        self.incidents
            .iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, _, state)| state.as_str())
    }
}

fn read(b: &Browser) -> Result<Page, String> {
    let v = b.execute(READ_PAGE)?;
    serde_json::from_value(v.clone()).map_err(|e| format!("{e}: {v}"))
}

fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CONSENTRY_SCREENSHOT_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-screenshots"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir.canonicalize().unwrap_or(dir)
}

fn shoot(b: &Browser, dir: &std::path::Path, name: &str) {
    let path = dir.join(name);
    b.screenshot(&path)
        .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
    info!("screenshot: {}", path.display());
}

fn go(b: &Browser, hash: &str) {
    b.execute(&format!(
        "location.hash = {}; return true;",
        serde_json::json!(hash)
    ))
    .unwrap_or_else(|e| panic!("navigate to {hash}: {e}"));
}

fn click(b: &Browser, id: &str) {
    // Wait until the button is usable (the demo state arrived, no request in flight).
    wait_until(&format!("#{id} enabled"), PAGE_TIMEOUT, || {
        let script = format!(
            "const b = document.getElementById({}); return !!b && !b.disabled && !document.getElementById('demo').hidden;",
            serde_json::json!(id)
        );
        match b.execute(&script)? {
            serde_json::Value::Bool(true) => Ok(()),
            v => Err(format!("{v}")),
        }
    });
    b.execute(&format!(
        "document.getElementById({}).click(); return true;",
        serde_json::json!(id)
    ))
    .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

#[test]
fn dashboard_is_air_gapped() {
    for bad in ["http://", "https://"] {
        assert!(
            !DASHBOARD.contains(bad),
            "dashboard.html must not name {bad} URLs: it is served air-gapped"
        );
    }
    let squeezed: String = DASHBOARD
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    for attr in ["src", "href", "action"] {
        for quote in ["\"", "'", ""] {
            let relative = format!("{attr}={quote}//");
            assert!(
                !squeezed.contains(&relative),
                "dashboard.html has a protocol-relative {attr}= (another host)"
            );
        }
    }
    assert!(
        !squeezed.contains("url(//") && !squeezed.contains("@import"),
        "dashboard.html loads no style from elsewhere"
    );
    // API data is hostile input: it reaches the page as text, never parsed as HTML.
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
    ] {
        assert!(!DASHBOARD.contains(sink), "dashboard.html uses {sink}");
    }
}

#[test]
fn dashboard_follows_the_demo_cluster_in_a_browser() {
    if let Some(reason) = browser::missing() {
        if skip_unless_required(&reason) {
            return;
        }
    }
    let shots = screenshot_dir();
    let demo = Demo::spawn();
    let port = demo.port;
    demo.wait_for_welcome();
    let b = Browser::start().unwrap_or_else(|e| panic!("start headless Chromium: {e}"));
    b.goto(&demo.url()).expect("open the dashboard");

    info!("the overview renders the real cluster: both demo checks OK at site-a and site-b");
    let first = wait_until(
        "the grid with every demo check OK at both sites",
        DEMO_READY_TIMEOUT,
        || {
            let p = read(&b)?;
            if p.all_cells("OK")
                && CHECKS.iter().all(|c| p.agreed(c) == Some("OK"))
                && p.updated_ms > 0
            {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    assert!(
        first.offline.is_none(),
        "no error banner: {:?}",
        first.offline
    );
    assert!(
        first.demo_shown,
        "the demo section is shown by `consentry demo`"
    );
    shoot(&b, &shots, "overview.png");

    info!("break the target with the page's button: cells, verdict and a new incident, without a reload");
    b.execute("window.__noReload = 1; return true;")
        .expect("set the no-reload marker");
    click(&b, "demo-break");
    let broken = wait_until(
        "demo checks CRITICAL at both sites and an open demo-web incident",
        DEMO_ALERT_TIMEOUT + PAGE_TIMEOUT,
        || {
            let p = read(&b)?;
            let open = p
                .incidents
                .iter()
                .find(|(_, check, state)| check == "demo-web" && state == "open")
                .map(|(id, _, _)| id.clone());
            match open {
                Some(id)
                    if p.all_cells("CRITICAL")
                        && CHECKS.iter().all(|c| p.agreed(c) == Some("CRITICAL")) =>
                {
                    Ok((id, p))
                }
                _ => Err(format!("{p:?}")),
            }
        },
    );
    let (incident, page) = broken;
    assert!(page.no_reload, "the page was not reloaded: {page:?}");
    assert!(
        http(port, "GET", "/api/v1/demo")
            .expect("demo state")
            .contains("\"broken\":true"),
        "the button broke the real target"
    );
    assert!(
        page.updated_ms > first.updated_ms,
        "the page refreshed itself"
    );
    shoot(&b, &shots, "broken.png");

    info!("incident #{incident}: its page shows the timeline with the opening");
    go(&b, &format!("#/incident/{incident}"));
    let p = wait_until(
        "the incident's timeline with an opened event",
        PAGE_TIMEOUT,
        || {
            let p = read(&b)?;
            if p.timeline.iter().any(|(kind, _)| kind == "opened") && p.incident_state.is_some() {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    let opened = &p
        .timeline
        .iter()
        .find(|(k, _)| k == "opened")
        .expect("opened")
        .1;
    assert!(
        opened.contains("CRITICAL") && opened.contains("site-a") && opened.contains("site-b"),
        "the opening names the severity and the agreeing sites: {opened}"
    );
    assert_eq!(p.incident_state.as_deref(), Some("open"));
    assert!(p.no_reload, "hash routing does not reload the page");
    shoot(&b, &shots, "incident.png");

    info!("the check page draws a latency line per probing site");
    go(&b, "#/check/demo-web");
    wait_until("the check page with its chart", PAGE_TIMEOUT, || {
        let p = read(&b)?;
        if p.check_verdict.is_some() && !p.chart_text.contains("loading") {
            Ok(())
        } else {
            Err(format!("{p:?}"))
        }
    });
    // Checked at the end, so that the cluster and heal steps run whatever the chart shows.
    let chart = poll_for(CHART_TIMEOUT, || {
        let p = read(&b)?;
        let sites: BTreeSet<&str> = p
            .chart_paths
            .iter()
            .filter(|(_, d)| *d > 0)
            .map(|(s, _)| s.as_str())
            .collect();
        if sites == PROBING.into_iter().collect() && p.chart_paths.len() == PROBING.len() {
            Ok(())
        } else {
            Err(format!(
                "paths {:?}, chart says {:?}",
                p.chart_paths, p.chart_text
            ))
        }
    });
    shoot(&b, &shots, "check.png");

    info!("the cluster page lists the 3 nodes and exactly one leader");
    go(&b, "#/cluster");
    let p = wait_until("3 nodes, one leader", PAGE_TIMEOUT, || {
        let p = read(&b)?;
        let leaders = p.nodes.iter().filter(|(_, _, l)| l == "true").count();
        if p.nodes.len() == 3 && leaders == 1 {
            Ok(p)
        } else {
            Err(format!("{:?}", p.nodes))
        }
    });
    let ids: BTreeSet<&str> = p.nodes.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["1", "2", "3"]), "{:?}", p.nodes);
    assert!(
        p.nodes.iter().all(|(_, role, _)| role == "voter"),
        "the demo's members are voters: {:?}",
        p.nodes
    );
    shoot(&b, &shots, "cluster.png");

    info!("heal the target: the cells return to OK and incident #{incident} closes");
    go(&b, "#/");
    click(&b, "demo-heal");
    let p = wait_until(
        "demo checks OK again and the incident closed",
        DEMO_ALERT_TIMEOUT + PAGE_TIMEOUT,
        || {
            let p = read(&b)?;
            if p.all_cells("OK")
                && CHECKS.iter().all(|c| p.agreed(c) == Some("OK"))
                && p.incident(&incident) == Some("closed")
            {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        },
    );
    assert!(p.no_reload, "still the same page: {p:?}");
    assert!(p.offline.is_none(), "no error banner: {:?}", p.offline);
    assert!(
        p.csp_violations.is_empty(),
        "the page broke no Content-Security-Policy rule: {:?}",
        p.csp_violations
    );
    shoot(&b, &shots, "healed.png");

    if let Err(why) = chart {
        panic!(
            "the check page's latency chart did not draw one line per probing site {PROBING:?} \
             within {CHART_TIMEOUT:?} (GET /api/v1/checks/demo-web/series): {why}"
        );
    }
}

/// Like `wait_until`, but hands the last observation back instead of panicking.
fn poll_for(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = crate::harness::Deadline::after(timeout);
    loop {
        match probe() {
            Ok(()) => return Ok(()),
            Err(e) if deadline.remaining().is_zero() => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
