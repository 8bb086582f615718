# syntax=docker/dockerfile:1
#
# The shop-analytics image: one binary, every subcommand (serve, generate, quickstart, ...).
#
#   docker build -t shop-analytics:local .
#   docker run --rm -p 50051:50051 shop-analytics:local quickstart --scale 0.1
#
# Needs BuildKit (the default builder of Docker 23+) for the cache mounts below.

ARG RUST_VERSION=1.95

# ---------------------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-bookworm AS builder

# protoc for the protobuf (shop API) crate. The image already has gcc, make, perl and
# zlib1g-dev, which the vendored librdkafka build (rdkafka crate) needs. Debian package versions
# are not pinned (DL3008): bookworm's security updates replace them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /build
# sqlx macros check queries against the prepared .sqlx data, never a live database.
ENV CARGO_TERM_COLOR=never \
    SQLX_OFFLINE=true

COPY . .

# The registry, git checkouts and target dir live in BuildKit caches, so a rebuild after a
# source change only recompiles the workspace crates. The target dir is a cache mount, so the
# binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --bin shop-analytics \
 && install -m 0755 target/release/shop-analytics /usr/local/bin/shop-analytics

# -------------------------------------------------------------------------- runtime
FROM debian:bookworm-slim AS runtime

# ca-certificates for TLS to S3 / AWS. bash (part of debian-slim) is used by the compose
# healthcheck (`</dev/tcp/127.0.0.1/50051`).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --home-dir /var/lib/shop-analytics \
      --create-home --shell /usr/sbin/nologin shop

COPY --from=builder /usr/local/bin/shop-analytics /usr/local/bin/shop-analytics

USER 10001:10001
# The default lake (./lake-data) of `quickstart` lands here, in a folder the user owns.
WORKDIR /var/lib/shop-analytics

# Listen on every interface: 127.0.0.1 (the binary's default) is unreachable from outside
# the container. SHOP_LISTEN / --listen still override it.
ENV SHOP_LISTEN=0.0.0.0:50051

# 50051: Flight SQL (gRPC). 8000: the REST API (added by the API issue).
EXPOSE 50051 8000

ENTRYPOINT ["shop-analytics"]
CMD ["--help"]
