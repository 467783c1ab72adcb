//! Invariant 2: every outage longer than the confirmation window, while a quorum of sites
//! could commit throughout, opens exactly one incident (or finds one already open).

use crate::judge::{covering, opened_during, required_outages, Alert, Availability};
use crate::world::{check_name, fmt_ms, RunRecord};

pub fn check(run: &RunRecord, avail: &Availability, alerts: &[Alert]) -> Vec<String> {
    let mut out = Vec::new();
    for outage in required_outages(&run.schedule, avail) {
        let name = check_name(outage.target);
        let (from, to) = (fmt_ms(outage.window.from), fmt_ms(outage.window.to));
        if covering(alerts, outage).is_empty() {
            out.push(format!(
                "{name} was down {from}..{to} and no incident opened"
            ));
        }
        let opened = opened_during(alerts, outage).len();
        if opened > 1 {
            out.push(format!(
                "{name} was down {from}..{to} and {opened} incidents opened for it"
            ));
        }
    }
    out
}
