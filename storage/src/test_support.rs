//! A tiny raft type config and key-value machine shared by this crate's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// Sets `key` to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub key: String,
    pub value: String,
}

/// The value `key` had before, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous(pub Option<String>);

openraft::declare_raft_types!(
    pub TestConfig:
        D = Put,
        R = Previous,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TestConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A key-value map that also counts the membership and blank entries it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    pub map: BTreeMap<String, String>,
    pub memberships: u64,
    pub blanks: u64,
}

impl Machine<TestConfig> for Kv {
    fn apply(&mut self, _log_id: &LogId<u64>, data: &Put) -> Previous {
        Previous(self.map.insert(data.key.clone(), data.value.clone()))
    }

    fn apply_membership(
        &mut self,
        _log_id: &LogId<u64>,
        membership: Option<&StoredMembership<u64, BasicNode>>,
    ) -> Previous {
        match membership {
            Some(_) => self.memberships += 1,
            None => self.blanks += 1,
        }
        Previous(None)
    }
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

pub fn put(term: u64, index: u64, key: &str, value: &str) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Put {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

pub fn blank(term: u64, index: u64) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TestConfig> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], None)),
    }
}
