//! `shop.v1.ProductService` over a demo lake: lookups, every filter, paging that visits each
//! product once, and every invalid request refused with the field named.

use std::collections::BTreeMap;

use arrow::array::{AsArray, Decimal128Array};
use arrow::datatypes::Int64Type;
use shop_api::ProductApi;
use shop_api::pb::product_service_server::ProductService;
use shop_api::pb::{GetProductRequest, ListProductsRequest, Product};
use shop_demo::{self as demo, DemoSpec};
use shop_lake::{Lake, LakeCatalog, LakeCatalogOptions, LakeConfig};
use shop_test_support::{TempLake, demo_lake, temp_lake};
use tonic::{Code, Request};

struct Fixture {
    api: ProductApi,
    /// product_id → (seller_id, category, price in cents), from the generator's own batch.
    expected: BTreeMap<i64, (i64, String, i128)>,
    _lake: TempLake,
}

async fn fixture() -> Fixture {
    let mut spec = DemoSpec::scaled(0.1).unwrap();
    spec.days = 1;
    spec.purchases = 10;
    let temp = demo_lake(&spec).await;
    let lake = &temp.lake;
    let (batch, _, _) = demo::products(&spec).unwrap();
    let ids = batch.column(0).as_primitive::<Int64Type>();
    let sellers = batch.column(1).as_primitive::<Int64Type>();
    let categories = batch.column(3).as_string::<i32>();
    let prices = batch
        .column(4)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    let expected = (0..batch.num_rows())
        .map(|i| {
            (
                ids.value(i),
                (
                    sellers.value(i),
                    categories.value(i).to_string(),
                    prices.value(i),
                ),
            )
        })
        .collect();
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    Fixture {
        api: ProductApi::new(lake, &catalog),
        expected,
        _lake: temp,
    }
}

fn cents(price: &str) -> i128 {
    let (int, frac) = price.split_once('.').unwrap();
    assert_eq!(frac.len(), 2, "{price}");
    format!("{int}{frac}").parse().unwrap()
}

/// Every page of a listing, checking page sizes and tokens on the way.
async fn all_pages(api: &ProductApi, mut request: ListProductsRequest) -> Vec<Product> {
    let mut products = Vec::new();
    loop {
        let page = api
            .list_products(Request::new(request.clone()))
            .await
            .unwrap()
            .into_inner();
        let size = if request.page_size == 0 {
            100
        } else {
            request.page_size
        } as usize;
        assert!(page.products.len() <= size);
        if !page.next_page_token.is_empty() {
            assert_eq!(page.products.len(), size, "only the last page is short");
        }
        products.extend(page.products);
        if page.next_page_token.is_empty() {
            return products;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn get_product_returns_the_product_or_not_found() {
    let f = fixture().await;
    let (&id, (seller, category, price)) = f.expected.iter().nth(17).unwrap();
    let product = f
        .api
        .get_product(Request::new(GetProductRequest { product_id: id }))
        .await
        .unwrap()
        .into_inner()
        .product
        .unwrap();
    assert_eq!(
        (
            product.product_id,
            product.seller_id,
            &product.category,
            cents(&product.price)
        ),
        (id, *seller, category, *price)
    );
    assert!(!product.name.is_empty());
    assert!(product.created_at.unwrap().seconds > 1_600_000_000);

    let missing = f.expected.keys().max().unwrap() + 1;
    let err = f
        .api
        .get_product(Request::new(GetProductRequest {
            product_id: missing,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&missing.to_string()));
    let err = f
        .api
        .get_product(Request::new(GetProductRequest { product_id: 0 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("product_id"));
}

#[tokio::test]
async fn listings_page_through_every_matching_product_once() {
    let f = fixture().await;
    // No filter, pages of 7: every product once, in order.
    let all = all_pages(
        &f.api,
        ListProductsRequest {
            page_size: 7,
            ..Default::default()
        },
    )
    .await;
    let ids: Vec<i64> = all.iter().map(|p| p.product_id).collect();
    assert_eq!(ids, f.expected.keys().copied().collect::<Vec<_>>());

    // Every filter at once, against the same filter over the generator's rows.
    let (_, (seller, category, _)) = f.expected.iter().next().unwrap();
    let request = ListProductsRequest {
        category: category.clone(),
        seller_id: *seller,
        min_price: "5".into(),
        max_price: "500.5".into(),
        page_size: 2,
        page_token: String::new(),
    };
    let got: Vec<i64> = all_pages(&f.api, request)
        .await
        .iter()
        .map(|p| p.product_id)
        .collect();
    let want: Vec<i64> = f
        .expected
        .iter()
        .filter(|(_, (s, c, p))| s == seller && c == category && (500..=50050).contains(p))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        !want.is_empty(),
        "the filter selects nothing, so it proves nothing"
    );
    assert_eq!(got, want);

    // Category alone (a bound parameter, so quotes are just characters).
    for category in [category.as_str(), "no such category", "x' OR '1'='1"] {
        let got = all_pages(
            &f.api,
            ListProductsRequest {
                category: category.into(),
                page_size: 1000,
                ..Default::default()
            },
        )
        .await;
        let want = f
            .expected
            .values()
            .filter(|(_, c, _)| c == category)
            .count();
        assert_eq!(got.len(), want, "{category}");
    }
}

#[tokio::test]
async fn invalid_listings_name_the_field() {
    let f = fixture().await;
    let cases = [
        (
            ListProductsRequest {
                page_size: -1,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListProductsRequest {
                page_size: 1001,
                ..Default::default()
            },
            "page_size",
        ),
        (
            ListProductsRequest {
                seller_id: -3,
                ..Default::default()
            },
            "seller_id",
        ),
        (
            ListProductsRequest {
                min_price: "cheap".into(),
                ..Default::default()
            },
            "min_price",
        ),
        (
            ListProductsRequest {
                max_price: "-1".into(),
                ..Default::default()
            },
            "max_price",
        ),
        (
            ListProductsRequest {
                min_price: "10".into(),
                max_price: "5".into(),
                ..Default::default()
            },
            "min_price",
        ),
        (
            ListProductsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
    ];
    for (request, field) in cases {
        let err = f
            .api
            .list_products(Request::new(request.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}");
        assert!(
            err.message().starts_with(field),
            "{field}: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn a_lake_without_a_catalogue_is_a_failed_precondition() {
    let temp = temp_lake();
    let lake = &temp.lake;
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    let api = ProductApi::new(lake, &catalog);
    let err = api
        .get_product(Request::new(GetProductRequest { product_id: 1 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("ingest products"));
}

/// Lookups follow a new catalogue load without a restart (the id index is rebuilt for the new
/// snapshot), and a product the new load dropped is gone.
#[tokio::test]
async fn lookups_follow_a_new_catalogue_load() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&LakeConfig {
        root: dir.path().join("lake").to_str().unwrap().to_string(),
        ..LakeConfig::default()
    })
    .unwrap();
    let csv = dir.path().join("products.csv");
    let load = |rows: &'static str| {
        let (lake, csv) = (lake.clone(), csv.clone());
        async move {
            std::fs::write(
                &csv,
                format!("product_id,seller_id,name,category,price\n{rows}"),
            )
            .unwrap();
            shop_ingest::products::load(&lake, &[csv], 0).await.unwrap();
        }
    };
    load("1,10,Tea,food,3.50\n2,11,Map,books,9.99\n").await;
    let catalog = LakeCatalog::new(lake.clone(), LakeCatalogOptions::default());
    catalog.refresh().await.unwrap();
    let api = ProductApi::new(&lake, &catalog);
    let tea = api.lookup(1).await.unwrap().unwrap();
    assert_eq!((tea.price.as_str(), tea.seller_id), ("3.50", 10));
    assert!(api.lookup(3).await.unwrap().is_none());

    load("1,10,Tea,food,4.25\n3,12,Pen,office,1.00\n").await;
    // The next lookup reads the new snapshot (each query reads the table's latest Delta
    // commit), and only the new one.
    assert_eq!(api.lookup(1).await.unwrap().unwrap().price, "4.25");
    assert_eq!(api.lookup(3).await.unwrap().unwrap().name, "Pen");
    assert!(api.lookup(2).await.unwrap().is_none());
    let err = api
        .get_product(Request::new(GetProductRequest { product_id: 2 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
