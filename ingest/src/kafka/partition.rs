//! What the worker holds for one partition between flushes: the buffer, the position and the
//! purchase_ids of the dedup window.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use chrono::NaiveDate;
use shop_types::purchases::{PurchaseBatch, Rejected};

use super::progress::{DEDUP_WINDOW, unix_now};

/// What one partition holds between flushes.
pub(super) struct PartitionState {
    pub(super) next_offset: i64,
    pub(super) first: Option<(i64, Instant)>,
    pub(super) last: i64,
    pub(super) bytes: usize,
    pub(super) events: usize,
    pub(super) rows: BTreeMap<NaiveDate, PurchaseBatch>,
    pub(super) rejected: Vec<Rejected>,
    /// purchase_ids (as UUID bits) of this partition written or buffered within the dedup
    /// window.
    pub(super) known: HashSet<u128>,
    /// When each id of `known` arrived, oldest first, to forget them after the window.
    pub(super) known_since: std::collections::VecDeque<(i64, u128)>,
    /// The partition's transaction version in `stage.purchases` as this worker last read or
    /// committed it (`None`: never committed).
    pub(super) committed: Option<i64>,
}

impl PartitionState {
    pub(super) fn new(recovered: Recovered) -> Self {
        let Recovered { committed } = recovered;
        Self {
            next_offset: committed.map_or(0, |c| c + 1),
            committed,
            first: None,
            last: -1,
            bytes: 0,
            events: 0,
            rows: BTreeMap::new(),
            rejected: Vec::new(),
            known_since: Default::default(),
            known: Default::default(),
        }
    }

    /// Forgets ids older than the dedup window.
    pub(super) fn forget_old_ids(&mut self) {
        let horizon = unix_now() - DEDUP_WINDOW.as_secs() as i64;
        while let Some((at, _)) = self.known_since.front() {
            if *at >= horizon {
                break;
            }
            let (_, id) = self.known_since.pop_front().expect("not empty");
            self.known.remove(&id);
        }
    }

    pub(super) fn clear_buffer(&mut self) {
        self.first = None;
        self.bytes = 0;
        self.events = 0;
        self.rows.clear();
        self.rejected.clear();
    }
}

/// What a new owner of a partition starts from.
pub(super) struct Recovered {
    /// The partition's transaction version in `stage.purchases`.
    pub(super) committed: Option<i64>,
}
