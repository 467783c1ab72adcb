//! Invariant 6: after the faults stop, the cluster converges and its incidents match the
//! truth.
//!
//! By the end of the quiet tail every node is running, every replica has applied within a
//! few entries of the others, no incident is open for a target that is up (all are, once
//! the faults stop), and every notification intent is settled.

use crate::world::RunRecord;

/// Entries a replica may trail the most advanced one by at the end (ticks in flight).
pub const APPLIED_SPREAD_MAX: u64 = 16;

pub fn check(run: &RunRecord) -> Vec<String> {
    let mut out = Vec::new();
    if run.catalog_applied_ms.is_none() {
        out.push("the catalog was never applied: the cluster did not form".to_string());
    }
    let newest = run
        .final_replicas
        .iter()
        .map(|r| r.applied)
        .max()
        .unwrap_or(0);
    for r in &run.final_replicas {
        let node = r.node;
        if !r.running {
            out.push(format!("node-{node} is not running at the end"));
            continue;
        }
        if newest - r.applied > APPLIED_SPREAD_MAX {
            out.push(format!(
                "node-{node} applied {} while another replica applied {newest}",
                r.applied
            ));
        }
        for t in &r.open {
            let target = *t;
            if run.schedule.target_up(target, run.schedule.end_ms()) {
                out.push(format!(
                    "node-{node} still shows an open incident for {} which is up",
                    crate::world::check_name(target)
                ));
            }
        }
        if r.unsettled > 0 {
            out.push(format!(
                "node-{node} has {} notification intents without an outcome",
                r.unsettled
            ));
        }
    }
    out
}
