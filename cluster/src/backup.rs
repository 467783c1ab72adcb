//! Backup and restore of what a cluster's operators built and what it recorded: the catalog,
//! the silences and the incident history.
//!
//! A backup is read from any replica's applied state ([`ClusterState::backup`]) and restored
//! into a fresh cluster through raft (`Command::Restore`), so every new replica applies the
//! same restore at the same index. Membership, per-site counters and pending notifications
//! are not carried over: the new cluster has its own members, judges every check afresh,
//! and must not re-send what the old one already sent. An incident that was open when the
//! backup was taken is restored closed, with a note saying so; if the target is still down,
//! the new cluster opens a new incident of its own.

use serde::{Deserialize, Serialize};

use crate::command::CommandResponse;
use crate::model::{Catalog, Event, Incident, Silence};
use crate::state::ClusterState;

/// Why a restored open incident is closed.
pub const RESTORE_CLOSE_NOTE: &str =
    "open when the backup was taken; closed by the restore (the restored cluster judges the check afresh)";

/// What a backup carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub catalog: Catalog,
    pub silences: Vec<Silence>,
    pub incidents: Vec<Incident>,
    pub next_incident_id: u64,
    pub next_silence_id: u64,
}

impl ClusterState {
    /// The backup of this replica's applied state.
    pub fn backup(&self) -> Backup {
        Backup {
            catalog: self.catalog.clone(),
            silences: self.silences.values().cloned().collect(),
            incidents: self.incidents.values().cloned().collect(),
            next_incident_id: self.next_incident_id,
            next_silence_id: self.next_silence_id,
        }
    }

    /// Applies a restore at `index`: only into a cluster that has no catalog, silence or
    /// incident yet (a fresh cluster), so nothing the new cluster recorded is overwritten.
    pub(crate) fn restore(&mut self, index: u64, backup: &Backup) -> CommandResponse {
        if self.catalog_index != 0 || !self.incidents.is_empty() || !self.silences.is_empty() {
            return CommandResponse::Rejected(
                "this cluster already has a catalog, silences or incidents: restore only into a fresh cluster"
                    .into(),
            );
        }
        let applied = self.apply_catalog(index, &backup.catalog);
        if applied != CommandResponse::Ok {
            return applied;
        }
        for silence in &backup.silences {
            self.silences.insert(silence.id, silence.clone());
        }
        for incident in &backup.incidents {
            let mut incident = incident.clone();
            if incident.is_open() {
                incident.closed_index = Some(index);
                incident.closed_tick = Some(self.tick);
                incident.close_note = Some(RESTORE_CLOSE_NOTE.into());
                incident.silenced_by = None;
                incident.parent_hold = None;
                incident.record(
                    index,
                    self.wall_ms,
                    Event::Closed {
                        sites: Vec::new(),
                        note: incident.close_note.clone(),
                    },
                );
            }
            self.incidents.insert(incident.id, incident);
        }
        // New ids continue after the restored ones: an id never names two things. (The
        // counters hold the last id given out.)
        let last_incident = self.incidents.keys().next_back().copied().unwrap_or(0);
        self.next_incident_id = self
            .next_incident_id
            .max(backup.next_incident_id)
            .max(last_incident);
        let last_silence = self.silences.keys().next_back().copied().unwrap_or(0);
        self.next_silence_id = self
            .next_silence_id
            .max(backup.next_silence_id)
            .max(last_silence);
        self.refresh_silenced();
        CommandResponse::Ok
    }
}
