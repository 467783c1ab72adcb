//! A scripted day through the real state machine into the history: known outages, one inside
//! a maintenance window, one straddling its end, a WARNING episode, and one site's path
//! failure. The report's figures are worked out by hand below.

use std::collections::BTreeMap;

use consentry_cluster::command::Command;
use consentry_cluster::model::{
    Catalog, CheckSpec, Matcher, ProbeResult, Reason, ResultBatch, SilenceSpec, Status,
};
use consentry_cluster::rule::TICK_MS;
use consentry_cluster::state::ClusterState;
use consentry_cluster::types::ClusterNode;

use super::store::{History, Retention, DAY_MS, MINUTE_MS};
use super::{report, ReportQuery};

/// 2026-10-01T00:00:00Z.
const T0: u64 = 1_790_812_800_000;
const SITES: [(u64, &str); 3] = [(1, "site-a"), (2, "site-b"), (3, "site-c")];

fn at(minute: u64) -> u64 {
    T0 + minute * MINUTE_MS
}

/// Each site's status at `minute`.
fn script(minute: u64, site: &str) -> Status {
    match minute {
        // Outage 1: every site sees it.
        100..=129 => Status::Critical,
        // Outage 2, inside the maintenance window 600..660.
        610..=619 => Status::Critical,
        // Outage 3, straddling the window's end.
        650..=669 => Status::Critical,
        // site-c's own path fails; the others see the target up.
        900..=999 if site == "site-c" => Status::Critical,
        // A WARNING episode (slow answers): an incident, not downtime.
        1200..=1204 => Status::Warning,
        _ => Status::Ok,
    }
}

struct Scripted {
    st: ClusterState,
    index: u64,
    commands: Vec<(u64, Command)>,
}

impl Scripted {
    fn new() -> Self {
        let members = SITES
            .iter()
            .map(|(id, site)| {
                (
                    *id,
                    ClusterNode {
                        addr: "127.0.0.1:1".into(),
                        site: (*site).into(),
                        probe: true,
                        api: String::new(),
                    },
                )
            })
            .collect();
        let mut s = Self {
            st: ClusterState {
                members,
                ..ClusterState::default()
            },
            index: 0,
            commands: Vec::new(),
        };
        let mut web = CheckSpec::for_test("web");
        web.interval_ms = 60_000;
        web.labels = BTreeMap::from([("customer".into(), "acme".into())]);
        let mut other = CheckSpec::for_test("other");
        other.interval_ms = 60_000;
        s.cmd(Command::ApplyCatalog(Catalog {
            checks: vec![web, other],
            notifiers: Vec::new(),
            operator_notify: Vec::new(),
            runbooks: Vec::new(),
        }));
        s.tick(T0);
        s.cmd(Command::AddSilence(SilenceSpec {
            matcher: Matcher::Label {
                key: "customer".into(),
                value: "acme".into(),
            },
            start_ms: at(600),
            end_ms: at(660),
            reason: "planned switch replacement".into(),
        }));
        s
    }

    fn cmd(&mut self, c: Command) {
        self.index += 1;
        let resp = self.st.apply_command(self.index, &c);
        assert!(
            !matches!(
                resp,
                consentry_cluster::command::CommandResponse::Rejected(_)
            ),
            "{resp:?}"
        );
        self.commands.push((self.index, c));
    }

    fn tick(&mut self, wall_ms: u64) {
        self.cmd(Command::Tick {
            leader_id: 1,
            wall_ms,
            advance: u32::try_from(60_000 / TICK_MS).unwrap(),
            leader_run: 1,
            leader_mono_ms: 0,
        });
    }

    fn minute(&mut self, minute: u64) {
        for (id, site) in SITES {
            let mut r = ProbeResult::new("web", script(minute, site), Reason::None, 20, "");
            r.observed_at_ms = at(minute);
            let mut o = ProbeResult::new("other", Status::Ok, Reason::None, 5, "ok");
            o.observed_at_ms = at(minute);
            self.cmd(Command::Results(ResultBatch {
                node_id: id,
                site: site.into(),
                results: vec![r, o],
            }));
        }
        self.tick(at(minute) + 30_000);
    }
}

fn day() -> (tempfile::TempDir, History, ClusterState) {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("history"), Retention::default()).unwrap();
    let mut s = Scripted::new();
    // Recorded in chunks as the follower does, copying the state every ten minutes (the
    // state drops a silence once its window is over).
    for m in 0..1440 {
        s.minute(m);
        if m % 10 == 9 {
            let commands = std::mem::take(&mut s.commands);
            h.record(commands.iter().map(|(i, c)| (*i, c)), s.index)
                .unwrap();
            let since = h.meta().unwrap().incidents_synced_index;
            h.sync_state(super::store::StateCopy::take(&s.st, since))
                .unwrap();
            // A repeat (a restart before the cursor reached disk) changes nothing.
            if m == 709 {
                h.record(commands.iter().map(|(i, c)| (*i, c)), s.index)
                    .unwrap();
            }
        }
    }
    (dir, h, s.st)
}

#[test]
fn a_scripted_day_gives_the_worked_out_figures() {
    let (_dir, h, st) = day();
    let q = ReportQuery {
        from_ms: T0,
        to_ms: T0 + DAY_MS,
        checks: Vec::new(),
        label: Some(("customer".into(), "acme".into())),
    };
    let r = report::availability(&h, &st.catalog.checks, &q, T0 + 2 * DAY_MS).unwrap();
    assert_eq!(r.checks.len(), 1, "the label selects web only");
    let web = &r.checks[0];
    assert_eq!(web.check, "web");
    // Outage 1: first failure at minute 100, recovery confirmed by the second OK (131).
    // Outage 3: 650 to 671, of which 650..660 is inside maintenance. Outage 2 (610 to 621)
    // is wholly inside it.
    assert_eq!(web.maintenance_ms, 60 * MINUTE_MS);
    assert_eq!(web.downtime_ms, (31 + 11) * MINUTE_MS);
    assert_eq!(web.maintenance_downtime_ms, (11 + 10) * MINUTE_MS);
    assert_eq!(web.counted_ms, (1440 - 60) * MINUTE_MS);
    let expected = 100.0 * (1.0 - 42.0 / 1380.0);
    assert!((web.availability_percent.unwrap() - expected).abs() < 1e-9);
    // Three outages and the WARNING episode; each confirmed one round after it began.
    assert_eq!(web.incidents, 4);
    assert_eq!(web.mean_time_to_detect_ms, Some(MINUTE_MS));
    // Agreement to recovery: 30, 10, 20 and 5 minutes.
    assert_eq!(web.mean_time_to_recover_ms, Some(65 * MINUTE_MS / 4));
    // Per-site raw availability: 60 down minutes everywhere, 100 more at site-c.
    let site = |name: &str| web.sites.iter().find(|s| s.site == name).unwrap();
    for s in ["site-a", "site-b"] {
        assert_eq!((site(s).results, site(s).up), (1440, 1380), "{s}");
    }
    assert_eq!((site("site-c").results, site("site-c").up), (1440, 1280));
    assert!((site("site-c").availability_percent.unwrap() - 100.0 * 1280.0 / 1440.0).abs() < 1e-9);
    assert_eq!(site("site-a").latency_avg_ms, Some(20.0));
    // site-c's path failure opened no incident: the agreed figure does not bill it.
    assert!(r
        .incidents
        .iter()
        .all(|i| i.start_ms < at(900) || i.start_ms >= at(1000)));
    assert_eq!(r.incidents.len(), 4);
    assert_eq!(r.incidents[0].start_ms, at(100));
    assert_eq!(r.incidents[0].closed_at_ms, Some(at(131)));

    // An unaffected check is whole.
    let q = ReportQuery {
        from_ms: T0,
        to_ms: T0 + DAY_MS,
        checks: vec!["other".into()],
        label: None,
    };
    let r = report::availability(&h, &st.catalog.checks, &q, T0 + 2 * DAY_MS).unwrap();
    assert_eq!(r.checks[0].availability_percent, Some(100.0));
    assert_eq!(
        r.checks[0].maintenance_ms, 0,
        "the silence matches web's label only"
    );
    assert_eq!(r.history_from_ms, Some(T0), "the first tick recorded");

    // A month before the history began has no figure, not 100 %.
    let before = ReportQuery {
        from_ms: T0 - 30 * DAY_MS,
        to_ms: T0,
        checks: vec!["other".into()],
        label: None,
    };
    let r = report::availability(&h, &st.catalog.checks, &before, T0 + 2 * DAY_MS).unwrap();
    assert_eq!(r.checks[0].availability_percent, None);
    // Nor one past the retention of incidents (hour_days), though a tick is that old.
    let r = report::availability(&h, &st.catalog.checks, &q, T0 + 500 * DAY_MS).unwrap();
    assert_eq!(r.checks[0].availability_percent, None);
    assert_eq!(r.history_from_ms, Some(T0 + 100 * DAY_MS));
}

#[test]
fn a_period_off_the_hour_reads_minute_and_hour_rollups() {
    let (_dir, h, st) = day();
    // 01:30 to 02:20: minutes 90..140, of which 100..130 are down at every site.
    let q = ReportQuery {
        from_ms: at(90),
        to_ms: at(140),
        checks: vec!["web".into()],
        label: None,
    };
    let r = report::availability(&h, &st.catalog.checks, &q, T0 + 2 * DAY_MS).unwrap();
    let web = &r.checks[0];
    assert_eq!(web.downtime_ms, 31 * MINUTE_MS);
    assert_eq!((web.sites[0].results, web.sites[0].up), (50, 20));
    // 23 hours from 00:30: minute rows at the edge, hour rows in between.
    let totals = h
        .totals(
            at(30),
            at(30) + 23 * 3_600_000,
            Some(&std::collections::HashSet::from(["web"])),
        )
        .unwrap();
    assert_eq!(totals["web"]["site-a"].n, 23 * 60);
}

#[test]
fn raw_results_series_and_retention() {
    let (_dir, h, _st) = day();
    let (rows, more) = h.raw("web", at(100), at(102), 1000).unwrap();
    assert!(!more);
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.status == Status::Critical));
    // A period from the epoch reads only the retained days (one key per minute).
    assert_eq!(h.raw("web", 0, at(102), 1000).unwrap().0.len(), 102 * 3);
    let (rows, more) = h.raw("web", T0, T0 + DAY_MS, 10).unwrap();
    assert_eq!((rows.len(), more), (10, true));
    let series = h.series("web", at(0), at(60), MINUTE_MS).unwrap();
    assert_eq!(series["site-c"].len(), 60);
    // 11 days later the raw rows are gone, the minute rows kept; after 36 days the
    // minute rows too; the hour and day rows and the incidents stay for 400 days.
    h.prune(T0 + 11 * DAY_MS).unwrap();
    assert!(h.raw("web", T0, T0 + DAY_MS, 10).unwrap().0.is_empty());
    assert_eq!(
        h.series("web", at(0), at(60), MINUTE_MS).unwrap()["site-a"].len(),
        60
    );
    h.prune(T0 + 36 * DAY_MS).unwrap();
    assert!(h
        .series("web", at(0), at(60), MINUTE_MS)
        .unwrap()
        .is_empty());
    let t = h.totals(T0, T0 + DAY_MS, None).unwrap();
    assert_eq!(t["web"]["site-b"].n, 1440);
    assert_eq!(h.incidents(T0, T0 + DAY_MS).unwrap().len(), 4);
    h.prune(T0 + 401 * DAY_MS).unwrap();
    assert!(h.totals(T0, T0 + DAY_MS, None).unwrap().is_empty());
    assert!(h.incidents(T0, T0 + DAY_MS).unwrap().is_empty());
}

#[test]
fn a_gap_moves_the_cursor_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h"), Retention::default()).unwrap();
    h.record(std::iter::empty(), 10).unwrap();
    h.record_gap(11, 40).unwrap();
    let m = h.meta().unwrap();
    assert_eq!(
        (m.cursor, m.gap_entries, m.gaps.clone()),
        (40, 30, vec![(11, 40)])
    );
    // Reopened, it resumes where it stopped.
    drop(h);
    let h = History::open(&dir.path().join("h"), Retention::default()).unwrap();
    assert_eq!(h.meta().unwrap().cursor, 40);
}

#[test]
fn an_incident_closed_by_removing_its_check_ends_when_it_was_removed() {
    let mut s = Scripted::new();
    for m in 0..=105 {
        s.minute(m);
    }
    let open = s.st.checks["web"]
        .open_incident
        .expect("the outage opened an incident");
    let mut other = CheckSpec::for_test("other");
    other.interval_ms = 60_000;
    s.cmd(Command::ApplyCatalog(Catalog {
        checks: vec![other],
        notifiers: Vec::new(),
        operator_notify: Vec::new(),
        runbooks: Vec::new(),
    }));
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(&dir.path().join("h"), Retention::default()).unwrap();
    h.sync_state(super::store::StateCopy::take(&s.st, 0))
        .unwrap();
    let rec = h
        .incidents(T0, T0 + DAY_MS)
        .unwrap()
        .into_iter()
        .find(|i| i.id == open)
        .unwrap();
    assert_eq!(rec.start_ms, at(100));
    // The leader's time at the removal: the last tick, 30 s into minute 105.
    assert_eq!(rec.closed_at_ms, Some(at(105) + 30_000));
}
