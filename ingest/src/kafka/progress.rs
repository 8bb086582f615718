//! Where a partition's progress lives: in the Delta logs of `stage.purchases` and of its dead
//! letters, as application transactions (`txn` actions) whose id names the consumer group, the
//! topic and the partition and whose version is the last offset committed.

use std::time::Duration;

use chrono::Utc;
use object_store::path::Path;
use shop_lake::{Lake, layout};

use super::{Result, TABLE};

/// How long after its first copy a repeated purchase_id is still recognised (by ingest time).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(15 * 60);

pub(super) fn unix_now() -> i64 {
    Utc::now().timestamp()
}

/// The Delta table of the purchases: `stage/purchases`.
pub fn data_dir() -> Path {
    layout::table_dir(layout::STAGE, TABLE)
}

/// The Delta table of the dead letters: `stage/_rejected/purchases`.
pub fn rejected_dir() -> Path {
    layout::dead_letter_dir(layout::STAGE, TABLE)
}

/// The application transaction id of one partition read by one consumer group.
pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("shop-analytics-kafka/{group}/{topic}/{partition}")
}

/// The first offset of `partition` that `stage.purchases` does not hold yet for `group`
/// (`None`: nothing committed yet).
pub async fn next_offset(
    lake: &Lake,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<i64>> {
    let committed = lake
        .transaction_version(&data_dir(), &app_id(group, topic, partition))
        .await?;
    Ok(committed.map(|last| last + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_tell_groups_topics_and_partitions_apart() {
        assert_ne!(app_id("g", "t", 1), app_id("g", "t", 11));
        assert_ne!(app_id("g", "t1", 1), app_id("g", "t", 11));
        assert_ne!(app_id("g1", "t", 1), app_id("g", "t", 1));
    }
}
