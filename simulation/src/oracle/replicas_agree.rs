//! Invariant 5: every replica had the same state at the same applied index.
//!
//! The driver hashes each replica's state (its codec bytes) whenever its applied index
//! moves, and records the first hash seen per index; any later replica showing a different
//! hash at that index diverged.

use crate::world::RunRecord;

pub fn check(run: &RunRecord) -> Vec<String> {
    run.divergences.clone()
}
