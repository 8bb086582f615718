//! `shop-analytics quickstart`: demo data, aggregates and the server, with nothing else needed.

use std::path::Path;

use anyhow::Context;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use shop_demo::{self as demo, DemoSpec};
use shop_lake::Lake;

use super::serve;
use crate::config::QuickstartArgs;
use crate::progress::progress_bar;

/// Marker of a demo lake: written before generation starts and completed after it ends, so an
/// interrupted generation is redone and a lake with other data is never touched.
const DEMO_MARKER: &str = "_demo.json";

#[derive(Debug, Serialize, Deserialize)]
struct DemoMarker {
    scale: f64,
    complete: bool,
}

pub async fn run(args: QuickstartArgs, file: Option<&Path>) -> anyhow::Result<()> {
    let lake = serve::open_lake(&args.lake, file).await?;
    let server = args.server.resolve(file)?;
    match read_marker(&lake).await? {
        Some(marker) if marker.complete => {
            eprintln!("Using the demo shop already in {}.", lake.location());
        }
        Some(_) => {
            eprintln!("An earlier demo generation was interrupted; generating again.");
            generate_demo(&lake, args.scale).await?;
        }
        None if lake.is_empty().await? => generate_demo(&lake, args.scale).await?,
        None => eprintln!(
            "{} already holds data that is not the demo shop; serving it as it is.",
            lake.location()
        ),
    }
    super::refresh::build_aggregates(&lake).await?;
    let running = serve::start(&lake, server, shop_api::Backends::default()).await?;
    print_connection_help(&running.uri(), &running.addr().to_string());
    serve::wait_for_shutdown(running).await
}

async fn read_marker(lake: &Lake) -> anyhow::Result<Option<DemoMarker>> {
    match lake.store().get(&ObjectPath::from(DEMO_MARKER)).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            Ok(Some(
                serde_json::from_slice(&bytes).context("invalid demo marker")?,
            ))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_marker(lake: &Lake, marker: &DemoMarker) -> anyhow::Result<()> {
    lake.put_bytes(&ObjectPath::from(DEMO_MARKER), serde_json::to_vec(marker)?)
        .await?;
    Ok(())
}

/// Generates the demo shop at `scale` into the stage of `lake`.
pub async fn generate_demo(lake: &Lake, scale: f64) -> anyhow::Result<()> {
    let spec = DemoSpec::scaled(scale)?;
    eprintln!(
        "Generating the demo shop into {}: {} customers, {} sellers, {} products, ~{} purchases \
         from {} to {}.",
        lake.location(),
        spec.customers,
        spec.sellers,
        spec.products,
        spec.purchases,
        spec.first_day(),
        spec.last_day
    );
    write_marker(
        lake,
        &DemoMarker {
            scale,
            complete: false,
        },
    )
    .await?;
    let started = std::time::Instant::now();
    let bar = progress_bar(spec.purchases as u64, "purchases");
    let summary = demo::generate(lake, &spec, |table, rows| {
        if table == "purchases" {
            bar.inc(rows);
        } else {
            tracing::info!(table, rows, "generated");
        }
    })
    .await?;
    bar.finish_and_clear();
    write_marker(
        lake,
        &DemoMarker {
            scale,
            complete: true,
        },
    )
    .await?;
    let rows: Vec<String> = summary
        .rows
        .iter()
        .map(|(t, n)| format!("{t}={n}"))
        .collect();
    eprintln!(
        "Generated {} in {:.1}s.",
        rows.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_connection_help(uri: &str, addr: &str) {
    let jdbc_options = if uri.starts_with("grpc+tls") {
        ""
    } else {
        "?useEncryption=false"
    };
    println!(
        r#"
shop-analytics is serving Flight SQL on {uri}  (Ctrl-C to stop)

  Python (pip install adbc-driver-flightsql pandas pyarrow):
    import adbc_driver_flightsql.dbapi as flightsql
    conn = flightsql.connect("{uri}")
    cur = conn.cursor()
    cur.execute("SELECT * FROM analytics.daily_sales ORDER BY dt")
    print(cur.fetch_df())

  JDBC (DBeaver, …): jdbc:arrow-flight-sql://{addr}{jdbc_options}
  Tables: shop.stage.customers, sellers, products, purchases; shop.analytics.daily_sales
"#
    );
}
