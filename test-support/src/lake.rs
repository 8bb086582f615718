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
