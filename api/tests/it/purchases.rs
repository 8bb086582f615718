//! `shop.v1.PurchaseService` reads over a demo lake: lookups, a customer's purchases in a time
//! range page by page (each once, oldest first, equal to an independent DataFusion query), and
//! purchases that land after the first read are seen by the same long-lived service.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use shop_api::pb::purchase_service_server::PurchaseService;
use shop_api::pb::{GetPurchaseRequest, ListPurchasesRequest, Purchase};
use shop_api::{Limits, ProductApi, PurchaseApi};
use shop_demo::DemoSpec;
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, session};
use shop_test_support::{TempLake, demo_lake};
use shop_types::purchases::{self as contract, PurchaseBatch};
use tonic::{Code, Request};

struct Fixture {
    lake: Lake,
    catalog: Arc<LakeCatalog>,
    api: PurchaseApi,
    _lake: TempLake,
}

async fn fixture() -> Fixture {
    let mut spec = DemoSpec::scaled(0.01).unwrap();
    spec.days = 5;
    spec.customers = 20;
    spec.purchases = 2_000;
    let temp = demo_lake(&spec).await;
    let lake = temp.lake.clone();
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    let api = PurchaseApi::new(
        &lake,
        &catalog,
        ProductApi::new(&lake, &catalog),
        None,
        None,
        Limits::default(),
    );
    Fixture {
        lake,
        catalog,
        api,
        _lake: temp,
    }
}

async fn sql(f: &Fixture, query: &str) -> Vec<RecordBatch> {
    let ctx = session::context(
        session::session_config(),
        session::runtime(&f.lake),
        &f.catalog,
    );
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

fn micros(p: &Purchase) -> i64 {
    let t = p.purchased_at.as_ref().unwrap();
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

async fn all_pages(f: &Fixture, mut request: ListPurchasesRequest) -> Vec<Purchase> {
    let mut out = Vec::new();
    loop {
        let page = f
            .api
            .list_purchases(Request::new(request.clone()))
            .await
            .unwrap()
            .into_inner();
        assert!(page.purchases.len() <= request.page_size as usize);
        out.extend(page.purchases);
        if page.next_page_token.is_empty() {
            return out;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_customers_purchases_page_by_page_in_a_time_range() {
    let f = fixture().await;
    // The customer with the most purchases, and a range that cuts through the middle days.
    let top = sql(
        &f,
        "SELECT customer_id, min(purchased_at), max(purchased_at) FROM purchases \
         GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 1",
    )
    .await;
    let customer = top[0].column(0).as_primitive::<Int64Type>().value(0);
    let first = top[0]
        .column(1)
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    let last = top[0]
        .column(2)
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    let (from, to) = (first + (last - first) / 4, last - (last - first) / 4);
    let expected = sql(
        &f,
        &format!(
            "SELECT purchase_id FROM purchases WHERE customer_id = {customer} \
             AND purchased_at >= to_timestamp_micros({from}) AND purchased_at < to_timestamp_micros({to}) \
             ORDER BY purchased_at, purchase_id"
        ),
    )
    .await;
    let expected: Vec<String> = expected
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        expected.len() > 7,
        "a range worth paging: {}",
        expected.len()
    );

    let stamp = |us: i64| pbjson_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    };
    let request = ListPurchasesRequest {
        customer_id: customer,
        from_time: Some(stamp(from)),
        to_time: Some(stamp(to)),
        page_size: 3,
        page_token: String::new(),
    };
    let got = all_pages(&f, request.clone()).await;
    let ids: Vec<&str> = got.iter().map(|p| p.purchase_id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(
        got.iter()
            .all(|p| p.customer_id == customer && (from..to).contains(&micros(p)))
    );
    assert!(got.windows(2).all(|w| micros(&w[0]) <= micros(&w[1])));

    // A token is bound to its customer and range.
    let page = f
        .api
        .list_purchases(Request::new(request.clone()))
        .await
        .unwrap()
        .into_inner();
    let err = f
        .api
        .list_purchases(Request::new(ListPurchasesRequest {
            customer_id: customer + 1,
            page_token: page.next_page_token,
            ..request.clone()
        }))
        .await
        .unwrap_err();
    assert!(err.message().contains("page_token"), "{}", err.message());
    for (field, bad) in [
        (
            "customer_id",
            ListPurchasesRequest {
                customer_id: 0,
                ..request.clone()
            },
        ),
        (
            "page_size",
            ListPurchasesRequest {
                page_size: 5000,
                ..request.clone()
            },
        ),
        (
            "from_time",
            ListPurchasesRequest {
                from_time: Some(stamp(to)),
                to_time: Some(stamp(from)),
                ..request.clone()
            },
        ),
    ] {
        let err = f.api.list_purchases(Request::new(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }

    // GetPurchase finds one of them with every field; an unknown or malformed id is refused.
    let one = f
        .api
        .get_purchase(Request::new(GetPurchaseRequest {
            purchase_id: got[2].purchase_id.to_uppercase(),
        }))
        .await
        .unwrap()
        .into_inner()
        .purchase
        .unwrap();
    assert_eq!(one, got[2]);
    let err = f
        .api
        .get_purchase(Request::new(GetPurchaseRequest {
            purchase_id: uuid::Uuid::new_v4().to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = f
        .api
        .get_purchase(Request::new(GetPurchaseRequest {
            purchase_id: "42".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("purchase_id"));
}

/// The service lives as long as the server: a purchase written after its first read must be
/// found (a regression: DataFusion's listing cache kept the first listing forever).
#[tokio::test]
async fn purchases_landing_after_the_first_read_are_found() {
    let f = fixture().await;
    let probe = uuid::Uuid::new_v4().to_string();
    let err = f
        .api
        .get_purchase(Request::new(GetPurchaseRequest {
            purchase_id: probe.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let now = chrono::Utc::now();
    let event = serde_json::json!({
        "schema_version": 1, "purchase_id": probe, "customer_id": 7, "product_id": 3,
        "seller_id": 2, "quantity": 1, "unit_price": "5.00", "currency": "EUR",
        "purchased_at": now.to_rfc3339(),
    });
    let purchase = contract::decode(event.to_string().as_bytes(), None).unwrap();
    let mut batch = PurchaseBatch::default();
    batch.push(&purchase);
    shop_test_support::lake::land_purchases(&f.lake, purchase.day(), &batch.finish()).await;
    f.catalog.refresh().await.unwrap();

    let found = f
        .api
        .get_purchase(Request::new(GetPurchaseRequest {
            purchase_id: probe.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .purchase
        .unwrap();
    assert_eq!((found.customer_id, found.unit_price.as_str()), (7, "5.00"));
    let listed = all_pages(
        &f,
        ListPurchasesRequest {
            customer_id: 7,
            page_size: 1000,
            ..Default::default()
        },
    )
    .await;
    assert!(listed.iter().any(|p| p.purchase_id == probe));
}

/// A forged page token with a time out of range is refused, not a crash.
#[tokio::test]
async fn forged_page_tokens_are_refused() {
    use base64::Engine as _;
    let f = fixture().await;
    for at in [i64::MAX, i64::MIN, 300_000_000_000_000_000] {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "purchases:1|||{at}|00000000-0000-0000-0000-000000000000"
        ));
        let err = f
            .api
            .list_purchases(Request::new(ListPurchasesRequest {
                customer_id: 1,
                page_size: 10,
                page_token: token,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{at}");
        assert!(err.message().contains("page_token"), "{}", err.message());
    }
}
