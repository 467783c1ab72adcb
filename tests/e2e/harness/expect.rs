//! Waits and holds over incidents and webhooks that several tests share.

use std::time::Duration;

use super::poll::hold_for;
use super::receiver::{Hook, Receiver};
use super::views::{describe_incidents, ClusterView, IncidentView};
use super::world::World;

impl World {
    /// Waits until the cluster has exactly one incident overall, open, for `check`.
    pub fn wait_one_open_incident(&self, check: &str, timeout: Duration) -> IncidentView {
        self.wait(
            &format!("exactly one open incident, for {check:?}"),
            timeout,
            || {
                let incidents = self.incidents_view(self.reader())?;
                match incidents.as_slice() {
                    [one] if one.check == check && one.is_open() => Ok(one.clone()),
                    _ => Err(describe_incidents(&incidents)),
                }
            },
        )
    }

    /// Waits until incident `id` is closed (with a `closed_index`) and it is still the only one.
    pub fn wait_incident_closed(&self, id: &str, timeout: Duration) -> IncidentView {
        self.wait(&format!("incident #{id} to close"), timeout, || {
            let incidents = self.incidents_view(self.reader())?;
            match incidents.as_slice() {
                [one] if one.id() == id && one.state == "closed" && one.closed_index.is_some() => {
                    Ok(one.clone())
                }
                _ => Err(describe_incidents(&incidents)),
            }
        })
    }

    /// Waits for the first `transition` webhook for `check` and checks its pinned shape.
    pub fn wait_hook(
        &self,
        receiver: &Receiver,
        check: &str,
        transition: &str,
        timeout: Duration,
    ) -> Hook {
        let hook = self.wait(
            &format!("a {transition:?} webhook for {check:?}"),
            timeout,
            || {
                receiver
                    .matching(check, transition)
                    .into_iter()
                    .next()
                    .ok_or_else(|| receiver.describe())
            },
        );
        let errors = hook.shape_errors();
        assert!(
            errors.is_empty(),
            "webhook does not have the pinned shape: {errors:?}\n  raw: {}",
            hook.raw
        );
        hook
    }

    /// Watches for `window` that the receiver keeps exactly `firing` firing and `resolved`
    /// resolved webhooks for `check`, and nothing for any other check.
    pub fn hold_hook_counts(
        &self,
        receiver: &Receiver,
        check: &str,
        firing: usize,
        resolved: usize,
        window: Duration,
    ) {
        hold_for(
            &format!("exactly {firing} firing and {resolved} resolved webhooks for {check:?}, none for others"),
            window,
            || {
                self.ensure_alive();
                let hooks = receiver.hooks();
                let count = |t: &str| hooks.iter().filter(|h| h.check() == Some(check) && h.transition() == Some(t)).count();
                let others = hooks.iter().filter(|h| h.check() != Some(check)).count();
                if count("firing") != firing || count("resolved") != resolved || others != 0 {
                    return Err(receiver.describe());
                }
                Ok(())
            },
        );
    }

    /// Waits until every member agrees on a leader and node `id` has applied at least what
    /// the leader had applied when the wait began. Returns `id`'s view.
    pub fn wait_caught_up(&self, id: u64, timeout: Duration) -> ClusterView {
        let target_index = self.wait_formed(timeout).applied_index;
        let view = self.wait(
            &format!("node {id} to apply up to the leader's index {target_index}"),
            timeout,
            || {
                let view = self.cluster_view(id)?;
                if view.applied_index >= target_index && view.leader.is_some() {
                    Ok(view)
                } else {
                    Err(format!(
                        "node {id}: applied {} last_log {} leader {:?}",
                        view.applied_index, view.last_log_index, view.leader
                    ))
                }
            },
        );
        info!(
            "node {id} caught up: applied {} (leader had {target_index}), leader {:?}",
            view.applied_index, view.leader
        );
        view
    }
}
