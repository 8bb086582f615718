//! `shop-analytics maintain`.

use std::path::Path;

use anyhow::bail;
use shop_lake::maintain;
use shop_types::report::Report;

use crate::config::MaintainArgs;

pub async fn run(args: MaintainArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = super::serve::open_lake(&args.lake, file).await?;
    let options = args.options();
    let tables = maintain::delta_tables(&lake).await?;
    if tables.is_empty() {
        println!("No Delta tables in {}.", lake.location());
        return Ok(());
    }
    let mut failed = Vec::new();
    for dir in &tables {
        match maintain::maintain_table(&lake, dir, &options).await {
            Ok(r) => println!(
                "{}: {} → {} files ({} compacted into {}), {} deleted by vacuum, version {}",
                r.table,
                r.files_before,
                r.files_after,
                r.compacted,
                r.written,
                r.vacuumed,
                r.version
            ),
            Err(e) => {
                eprintln!("{dir}: {}", Report(&e));
                failed.push(dir.to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!("maintenance failed for {}", failed.join(", "));
    }
    Ok(())
}
