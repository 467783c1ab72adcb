//! Invariant 4: no notification executed twice without a dedup key; never two intents for
//! one incident transition and channel.
//!
//! consentry's notifications are at-least-once: a leader that dies between sending and
//! committing the outcome leaves the intent unsettled, and the next leader sends it again
//! with the same dedup key, which receivers that dedupe collapse. Those resends are counted,
//! not violations. A second *intent* for the same transition, or a resend whose key differs,
//! would page a person twice: that is a violation. (Recovery actions, which must run
//! exactly once with fencing tokens, join this invariant when they exist.)

use std::collections::{BTreeMap, BTreeSet};

use crate::world::{fmt_ms, RunRecord};

/// Returns (violations, resends, duplicate effects a deduplicating receiver would show).
pub fn check(run: &RunRecord) -> (Vec<String>, u64, u64) {
    let mut out = Vec::new();
    let mut by_intent: BTreeMap<u64, Vec<&crate::world::DeliveryRecord>> = BTreeMap::new();
    for d in &run.deliveries {
        by_intent.entry(d.intent_id).or_default().push(d);
    }
    let mut resends = 0;
    for (intent, sends) in &by_intent {
        resends += sends.len() as u64 - 1;
        let keys: BTreeSet<&str> = sends.iter().map(|d| d.dedup_key.as_str()).collect();
        if keys.len() > 1 || keys.contains("") {
            out.push(format!(
                "intent {intent} was sent {} times with dedup keys {keys:?}",
                sends.len()
            ));
        }
    }
    // One incident transition on one channel is one event for a person.
    let mut by_event: BTreeMap<(u64, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    for d in run.deliveries.iter().filter(|d| d.incident_id != 0) {
        by_event
            .entry((d.incident_id, d.transition.as_str(), d.check.as_str()))
            .or_default()
            .insert(d.dedup_key.as_str());
    }
    let mut duplicates = 0;
    for ((incident, transition, check), keys) in &by_event {
        if keys.len() > 1 {
            duplicates += keys.len() as u64 - 1;
            let first = run
                .deliveries
                .iter()
                .find(|d| d.incident_id == *incident)
                .map_or(0, |d| d.ms);
            out.push(format!(
                "incident {incident} ({check}) {transition} reached the receiver under {} keys from {}",
                keys.len(),
                fmt_ms(first)
            ));
        }
    }
    (out, resends, duplicates)
}
