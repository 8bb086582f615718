"""A Python gRPC client of the shop API (shop.v1 ProductService, PurchaseService, SellerService).

Generate the stubs once (`./generate.sh`, see README.md), then use it as a library:

    from shop_client import ShopClient

    with ShopClient("127.0.0.1:50051") as shop:
        product = shop.get_product(42)
        reply = shop.create_purchase(customer_id=7, product_id=42, quantity=2)
        print(reply.purchase.purchase_id, reply.replayed)
        for seller in shop.list_sellers(country="DE"):
            print(seller.seller_id, seller.name)

or from the command line, like grpcurl (request and answer in the proto3 JSON mapping):

    python shop_client.py GetProduct '{"product_id": 42}'
    python shop_client.py CreatePurchase '{"customer_id": 7, "product_id": 42, "quantity": 2,
                                           "idempotency_key": "order-1001"}'
    python shop_client.py --list

Settings (flags win over the environment):
    --target / SHOP_GRPC_TARGET      HOST:PORT of the server (default 127.0.0.1:50051)
    --user, --password / SHOP_USER, SHOP_PASSWORD   when the server has authentication on
    --tls-ca / SHOP_TLS_CA           PEM file of the CA that signed the server's certificate
                                     (turns TLS on)
    --stubs / SHOP_GRPC_STUBS        where generate.sh wrote the stubs (default gen/ here)
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import grpc
from google.protobuf import json_format

HERE = Path(__file__).resolve().parent
DEFAULT_TARGET = "127.0.0.1:50051"
SERVICES = ("ProductService", "PurchaseService", "SellerService")
# Codes after which CreatePurchase may be retried with the same idempotency key.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def load_stubs(stubs_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The generated modules: {"ProductService": (pb2, pb2_grpc), ...}."""
    folder = Path(stubs_dir or os.environ.get("SHOP_GRPC_STUBS") or HERE / "gen").resolve()
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    modules = {}
    for service in SERVICES:
        base = "shop.v1." + service.replace("Service", "").lower() + "_service"
        try:
            modules[service] = (
                importlib.import_module(base + "_pb2"),
                importlib.import_module(base + "_pb2_grpc"),
            )
        except ImportError as e:
            raise RuntimeError(
                f"no shop.v1 stubs in {folder} ({e}): run {HERE / 'generate.sh'} first"
            ) from e
    return modules


def to_json(message) -> dict:
    """A message as the REST gateway shows it: proto field names, every scalar field also when
    it is the default, int64 as strings, times as RFC 3339; an unset message field (extras) is
    left out."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class ShopClient:
    """One channel to the server; every call has a deadline and the credentials, if any."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        user: str | None = None,
        password: str | None = None,
        tls_ca: str | os.PathLike | None = None,
        timeout: float = 30.0,
        stubs_dir: str | os.PathLike | None = None,
    ):
        self.modules = load_stubs(stubs_dir)
        self.timeout = timeout
        self.metadata: list[tuple[str, str]] = []
        if user:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.metadata.append(("authorization", f"Basic {token}"))
        if tls_ca:
            creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(target, creds)
        else:
            self.channel = grpc.insecure_channel(target)
        self.stubs = {
            name: getattr(grpc_mod, f"{name}Stub")(self.channel)
            for name, (_, grpc_mod) in self.modules.items()
        }

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ShopClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- generic access
    def message(self, service: str, message_name: str, /, **fields):
        """A message of `service`'s file, e.g. message("SellerService", "GetSellerRequest",
        seller_id=3)."""
        return getattr(self.modules[service][0], message_name)(**fields)

    def methods(self) -> dict[str, tuple[str, Any]]:
        """{"CreatePurchase": ("PurchaseService", <input descriptor>), ...}."""
        found = {}
        for service, (pb2, _) in self.modules.items():
            for method in pb2.DESCRIPTOR.services_by_name[service].methods:
                found[method.name] = (service, method.input_type)
        return found

    def call(self, method: str, request):
        """Calls `method` ("GetSeller" or "shop.v1.SellerService/GetSeller") with a request
        message or a dict in the proto3 JSON mapping."""
        name = method.rsplit("/", 1)[-1]
        service, input_type = self.methods()[name]
        if isinstance(request, dict):
            request = json_format.ParseDict(request, self.message(service, input_type.name))
        rpc = getattr(self.stubs[service], name)
        return rpc(request, timeout=self.timeout, metadata=self.metadata)

    def _pages(self, method: str, request, items: str) -> Iterator:
        while True:
            reply = self.call(method, request)
            yield from getattr(reply, items)
            if not reply.next_page_token:
                return
            request.page_token = reply.next_page_token

    # ---------------------------------------------------------------- products
    def get_product(self, product_id: int):
        req = self.message("ProductService", "GetProductRequest", product_id=product_id)
        return self.call("GetProduct", req).product

    def list_products(self, *, page_size: int = 100, **filters) -> Iterator:
        """Every product matching the filters (category, seller_id, min_price, max_price),
        page after page."""
        req = self.message("ProductService", "ListProductsRequest", page_size=page_size, **filters)
        return self._pages("ListProducts", req, "products")

    # ---------------------------------------------------------------- purchases
    def create_purchase(
        self,
        customer_id: int,
        product_id: int,
        quantity: int,
        *,
        unit_price: str = "",
        currency: str = "",
        purchased_at: dt.datetime | None = None,
        extras: dict | None = None,
        idempotency_key: str | None = None,
        attempts: int = 3,
    ):
        """Creates a purchase and returns the CreatePurchaseResponse (purchase, replayed).

        Every request carries an idempotency key (a new UUID unless given), so the call can be
        retried safely: when Kafka does not acknowledge in time the server answers UNAVAILABLE,
        and the retry with the same key publishes the purchase once."""
        req = self.message(
            "PurchaseService",
            "CreatePurchaseRequest",
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            unit_price=unit_price,
            currency=currency,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        if purchased_at is not None:
            req.purchased_at.FromDatetime(purchased_at)
        if extras:
            req.extras.update(extras)
        for attempt in range(1, attempts + 1):
            try:
                return self.call("CreatePurchase", req)
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE or attempt == attempts:
                    raise
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def get_purchase(self, purchase_id: str):
        req = self.message("PurchaseService", "GetPurchaseRequest", purchase_id=purchase_id)
        return self.call("GetPurchase", req).purchase

    def list_purchases(
        self,
        customer_id: int,
        *,
        from_time: dt.datetime | None = None,
        to_time: dt.datetime | None = None,
        page_size: int = 100,
    ) -> Iterator:
        """A customer's purchases with from_time ≤ purchased_at < to_time, oldest first."""
        req = self.message(
            "PurchaseService", "ListPurchasesRequest", customer_id=customer_id, page_size=page_size
        )
        if from_time is not None:
            req.from_time.FromDatetime(from_time)
        if to_time is not None:
            req.to_time.FromDatetime(to_time)
        return self._pages("ListPurchases", req, "purchases")

    # ---------------------------------------------------------------- sellers
    def create_seller(self, name: str, country: str, **fields):
        """fields: email, city, rating, commission_rate (strings), is_verified (bool)."""
        req = self.message(
            "SellerService", "CreateSellerRequest", name=name, country=country, **fields
        )
        return self.call("CreateSeller", req).seller

    def get_seller(self, seller_id: int):
        req = self.message("SellerService", "GetSellerRequest", seller_id=seller_id)
        return self.call("GetSeller", req).seller

    def list_sellers(self, *, country: str = "", page_size: int = 100) -> Iterator:
        req = self.message(
            "SellerService", "ListSellersRequest", country=country, page_size=page_size
        )
        return self._pages("ListSellers", req, "sellers")

    def update_seller(self, seller_id: int, **changes):
        """Changes only the given fields; "" clears email, city or rating."""
        req = self.message("SellerService", "UpdateSellerRequest", seller_id=seller_id, **changes)
        return self.call("UpdateSeller", req).seller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Calls one RPC of the shop API; request and answer are proto3 JSON."
    )
    parser.add_argument("method", nargs="?", help="e.g. GetProduct or shop.v1.SellerService/GetSeller")
    parser.add_argument("request", nargs="?", default="{}", help="the request as JSON ('-': stdin)")
    parser.add_argument("--target", default=os.environ.get("SHOP_GRPC_TARGET", DEFAULT_TARGET))
    parser.add_argument("--user", default=os.environ.get("SHOP_USER"))
    parser.add_argument("--password", default=os.environ.get("SHOP_PASSWORD"))
    parser.add_argument("--tls-ca", default=os.environ.get("SHOP_TLS_CA"))
    parser.add_argument("--stubs", default=None)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--list", action="store_true", help="list the RPCs and exit")
    args = parser.parse_args(argv)

    with ShopClient(
        args.target,
        user=args.user,
        password=args.password,
        tls_ca=args.tls_ca,
        timeout=args.timeout,
        stubs_dir=args.stubs,
    ) as shop:
        methods = shop.methods()
        if args.list or not args.method:
            for name, (service, input_type) in methods.items():
                print(f"shop.v1.{service}/{name}({input_type.name})")
            return 0 if args.list else 2
        if args.method.rsplit("/", 1)[-1] not in methods:
            parser.error(f"unknown method {args.method!r}; --list shows them")
        text = sys.stdin.read() if args.request == "-" else args.request
        try:
            reply = shop.call(args.method, json.loads(text))
        except grpc.RpcError as e:
            error = {"code": e.code().name, "message": e.details()}
            print(json.dumps(error, ensure_ascii=False), file=sys.stderr)
            return 1
        except (json.JSONDecodeError, json_format.ParseError) as e:
            parser.error(f"the request is not a {args.method} request in JSON: {e}")
        print(json.dumps(to_json(reply), indent=2, ensure_ascii=False))
        return 0


if __name__ == "__main__":
    sys.exit(main())
