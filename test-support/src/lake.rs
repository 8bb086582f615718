//! Local lakes in temporary folders, for tests and examples.

use std::path::Path;

use shop_demo::DemoSpec;
use shop_lake::{Lake, LakeConfig};

/// A lake in a temporary folder, removed when this is dropped.
pub struct TempLake {
    pub lake: Lake,
    dir: tempfile::TempDir,
}

impl TempLake {
    /// The lake's folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration that opens this lake (for a second `Lake`, or a process).
    pub fn config(&self) -> LakeConfig {
        local_config(self.dir.path())
    }
}

fn local_config(root: &Path) -> LakeConfig {
    LakeConfig {
        root: root.display().to_string(),
        ..LakeConfig::default()
    }
}

/// An empty local lake.
///
/// # Panics
/// When no temporary folder can be made: a broken test machine.
pub fn temp_lake() -> TempLake {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let lake = Lake::open(&local_config(dir.path())).expect("a local lake opens");
    TempLake { lake, dir }
}

/// A local lake holding the demo shop of `spec`.
///
/// # Panics
/// When the demo cannot be written: a broken test machine or spec.
pub async fn demo_lake(spec: &DemoSpec) -> TempLake {
    let lake = temp_lake();
    shop_demo::generate(&lake.lake, spec, |_, _| {})
        .await
        .expect("the demo shop is written");
    lake
}

/// Lands purchases of one day in `stage.purchases` as one Delta commit, the way the Kafka
/// worker does (for tests of what readers see when purchases arrive).
///
/// # Panics
/// When the commit fails: the test cannot go on.
pub async fn land_purchases(
    lake: &Lake,
    day: chrono::NaiveDate,
    batch: &arrow::array::RecordBatch,
) {
    use shop_types::purchases::{DAY_COLUMN, with_day};
    lake.write_delta(
        &shop_lake::layout::table_dir(shop_lake::layout::STAGE, "purchases"),
        &[DAY_COLUMN],
        vec![with_day(batch, day)],
        shop_lake::delta::Mode::Append,
        shop_lake::delta::CommitInfo::default(),
    )
    .await
    .expect("purchases land in the lake");
}
