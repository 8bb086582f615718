"""Checks docker-compose.yml and the Dockerfile without a Docker engine.

    python3 -m venv .venv && .venv/bin/pip install -r tests/compose/requirements.txt
    .venv/bin/pytest tests/compose

The checks live in compose_checks.py. Each one runs here against the real files (one test
each) and against deliberately broken in-memory copies, which it must reject.
"""

from __future__ import annotations

import re
import stat
import textwrap
from pathlib import Path

import pytest

import compose_checks as cc


@pytest.fixture(scope="module")
def project() -> cc.Project:
    return cc.load_project()


def assert_no_problems(problems: list[str]) -> None:
    assert not problems, "docker-compose.yml / Dockerfile:\n  - " + "\n  - ".join(problems)


# --------------------------------------------------------------------------- the real files


def test_top_level_is_compose_spec(project):
    assert_no_problems(cc.check_top_level(project))


def test_every_long_running_service_has_a_healthcheck(project):
    assert_no_problems(cc.check_healthchecks(project))


def test_depends_on_targets_exist_and_use_conditions(project):
    assert_no_problems(cc.check_depends_on(project))


def test_one_shot_jobs_are_adopted_so_up_wait_succeeds(project):
    assert_no_problems(cc.check_one_shot_jobs_are_adopted(project))


def test_no_host_port_is_published_twice(project):
    assert_no_problems(cc.check_host_ports(project))


def test_seed_ports_are_published(project):
    assert_no_problems(cc.check_seed_ports(project))


def test_every_published_port_binds_to_loopback_by_default(project):
    assert_no_problems(cc.check_loopback_ports(project))


def test_shop_variables_are_ones_the_app_reads(project):
    assert_no_problems(cc.check_shop_env(project))


def test_server_has_an_s3_lake_in_minio(project):
    assert_no_problems(cc.check_s3_lake(project))


def test_s3_credentials_are_minio_root_credentials(project):
    assert_no_problems(cc.check_s3_credentials(project))


def test_commands_start_with_existing_subcommands(project):
    assert_no_problems(cc.check_commands(project))


def test_dockerfile_entrypoint_and_exposed_server_port(project):
    assert_no_problems(cc.check_dockerfile(project))


def test_bind_mounts_and_volumes_exist(project):
    assert_no_problems(cc.check_bind_mounts(project))


# --------------------------------------------------------------------------- broken copies

DELETE = object()


def setting(*path_and_value):
    """A mutation that sets (or, with DELETE, removes) compose[path...] = value."""
    *path, value = path_and_value

    def mutate(p: cc.Project) -> None:
        node = p.compose
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            assert path[-1] in node, f"nothing to delete at {path}"
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return mutate


def dockerfile(old: str, new: str):
    def mutate(p: cc.Project) -> None:
        text = p.read("Dockerfile")
        assert old in text, f"{old!r} is not in the Dockerfile any more; update this test"
        p.overrides["Dockerfile"] = text.replace(old, new)

    return mutate


def compose_text(old: str, new: str):
    """A mutation of the YAML text itself (before interpolation), as a user's edit would be."""
    def mutate(p: cc.Project) -> None:
        text = (cc.REPO / cc.COMPOSE_FILE).read_text()
        assert old in text, f"{old!r} is not in {cc.COMPOSE_FILE} any more; update this test"
        p.compose = cc.load_compose(text.replace(old, new))

    return mutate


def both(*mutations):
    def mutate(p: cc.Project) -> None:
        for m in mutations:
            m(p)

    return mutate


def no_subcommands(p: cc.Project) -> None:
    p.subcommands, p.subcommands_from = None, "source scan failed; no built binary"


def no_app_env(p: cc.Project) -> None:
    p.app_env = set()


S = "services"
BROKEN = [
    # check, mutation, what the report must say
    ("version-key", cc.check_top_level, setting("version", "3.9"), r"`version:` key is obsolete"),
    ("no-image", cc.check_top_level, setting(S, "kafka", "image", DELETE), r"'kafka' has neither"),
    ("kafka-no-healthcheck", cc.check_healthchecks, setting(S, "kafka", "healthcheck", DELETE),
     r"'kafka' keeps running but has no healthcheck"),
    ("healthcheck-disabled", cc.check_healthchecks,
     setting(S, "clickhouse", "healthcheck", {"disable": True}), r"'clickhouse' keeps running"),
    ("init-not-one-shot", cc.check_healthchecks, setting(S, "minio-init", "restart", DELETE),
     r"'minio-init' keeps running"),
    ("dep-unknown", cc.check_depends_on,
     setting(S, "server", "depends_on", "minio-typo", {"condition": cc.HEALTHY}),
     r"'server' depends on 'minio-typo', which is not a service"),
    ("dep-started", cc.check_depends_on,
     setting(S, "server", "depends_on", "minio", {"condition": "service_started"}),
     r"condition 'service_started'"),
    ("dep-no-condition", cc.check_depends_on,
     setting(S, "server", "depends_on", "minio", {}), r"'server' depends on 'minio' with condition None"),
    ("dep-list-form", cc.check_depends_on, setting(S, "server", "depends_on", ["minio"]),
     r"short list form"),
    ("dep-healthy-without-healthcheck", cc.check_depends_on,
     both(setting(S, "kafka", "healthcheck", DELETE),
          setting(S, "server", "depends_on", "kafka", {"condition": cc.HEALTHY})),
     r"waits for 'kafka' to be healthy, but 'kafka' has no healthcheck"),
    ("dep-completed-on-daemon", cc.check_depends_on,
     setting(S, "server", "depends_on", "postgres", {"condition": cc.COMPLETED}),
     r"waits for 'postgres' to complete, but 'postgres' is restarted forever"),
    ("dep-on-profile-only", cc.check_depends_on,
     setting(S, "server", "depends_on", "demo", {"condition": cc.COMPLETED}),
     r"'server' \(always started\) depends on 'demo', which only starts with the profiles"),
    ("init-not-adopted", cc.check_one_shot_jobs_are_adopted,
     both(setting(S, "server", "depends_on", "minio-init", DELETE),
          setting(S, "ingest-postgres", "depends_on", "minio-init", DELETE),
          setting(S, "ingest-kafka", "depends_on", "minio-init", DELETE)),
     r"one-shot job 'minio-init' is not depended on"),
    ("duplicate-port", cc.check_host_ports,
     setting(S, "clickhouse", "ports", ["8123:8123", "9000:9000"]),
     r"host port 9000/tcp is published by 'minio' and by 'clickhouse'"),
    ("duplicate-port-long-syntax", cc.check_host_ports,
     setting(S, "postgres", "ports", [{"target": 5432, "published": "50051"}]),
     r"host port 50051/tcp is published by 'postgres' and by 'server'"),
    ("duplicate-port-with-ip", cc.check_host_ports,
     setting(S, "kafka", "ports", ["127.0.0.1:5432:9092"]), r"host port 5432/tcp"),
    ("port-on-all-interfaces", cc.check_loopback_ports, setting(S, "postgres", "ports", ["5432:5432"]),
     r"'postgres' publishes 5432/tcp on all interfaces by default; bind it to loopback: "
     r"\"\$\{SHOP_BIND_ADDRESS:-127\.0\.0\.1\}:5432:5432\""),
    ("port-on-wildcard-ip", cc.check_loopback_ports,
     setting(S, "server", "ports", ["127.0.0.1:50051:50051", "0.0.0.0:8000:8000"]),
     r"'server' publishes 8000/tcp on 0\.0\.0\.0 by default"),
    ("port-on-ipv6-wildcard", cc.check_loopback_ports, setting(S, "kafka", "ports", ["[::]:29092:29092"]),
     r"'kafka' publishes 29092/tcp on :: by default"),
    ("port-random-host-port", cc.check_loopback_ports, setting(S, "clickhouse", "ports", ["8123"]),
     r"'clickhouse' publishes 8123/tcp on all interfaces"),
    ("port-long-syntax-without-ip", cc.check_loopback_ports,
     setting(S, "minio", "ports", [{"target": 9001, "published": "9001", "host_ip": "127.0.0.1"},
                                   {"target": 9000, "published": "9000"}]),
     r"'minio' publishes 9000/tcp on all interfaces"),
    ("port-default-not-loopback", cc.check_loopback_ports,
     compose_text("${SHOP_BIND_ADDRESS:-127.0.0.1}:8123", "${SHOP_BIND_ADDRESS:-0.0.0.0}:8123"),
     r"'clickhouse' publishes 8123/tcp on 0\.0\.0\.0 by default"),
    ("no-clickhouse-http", cc.check_seed_ports, setting(S, "clickhouse", "ports", DELETE),
     r"host port 8123 \(the ClickHouse HTTP interface"),
    ("console-moved", cc.check_seed_ports, setting(S, "minio", "ports", ["9000:9000", "9002:9001"]),
     r"host port 9001 \(the MinIO console"),
    ("seed-port-wrong-service", cc.check_seed_ports,
     both(setting(S, "clickhouse", "ports", ["18123:8123"]),
          setting(S, "postgres", "ports", ["8123:5432"])),
     r"8123 should be the ClickHouse HTTP interface .* but 'postgres'"),
    ("reserved-port", cc.check_seed_ports, setting(S, "postgres", "ports", ["8000:5432"]),
     r"host port 8000 is kept for the shop REST API, but 'postgres'"),
    ("unknown-shop-var", cc.check_shop_env,
     setting(S, "server", "environment", "SHOP_S3_SECRET_KEY", "x"),
     r"'server' sets SHOP_S3_SECRET_KEY, which shop-analytics does not read \(did you mean "
     r"SHOP_S3_SECRET_ACCESS_KEY\?\)"),
    ("unknown-shop-var-demo", cc.check_shop_env,
     setting(S, "demo", "environment", "SHOP_SCALE", "0.1"), r"'demo' sets SHOP_SCALE"),
    ("env-scan-broken", cc.check_shop_env, no_app_env, r"found no SHOP_\* variables"),
    ("local-lake", cc.check_s3_lake, setting(S, "server", "environment", "SHOP_LAKE", "./lake-data"),
     r"'server': SHOP_LAKE is './lake-data'"),
    ("no-lake", cc.check_s3_lake, setting(S, "server", "environment", "SHOP_LAKE", DELETE),
     r"'server': SHOP_LAKE is None"),
    ("endpoint-unknown-host", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_ENDPOINT", "http://s3:9000"),
     r"names host 's3', which is not a compose service"),
    ("endpoint-wrong-port", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_ENDPOINT", "http://minio:9999"),
     r"uses port 9999, but 'minio' exposes only \[9000, 9001\]"),
    ("endpoint-missing", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_ENDPOINT", DELETE), r"SHOP_S3_ENDPOINT is not set"),
    ("http-not-allowed", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_ALLOW_HTTP", DELETE),
     r"plain http, so SHOP_S3_ALLOW_HTTP must be 'true'"),
    ("allow-http-not-clap-bool", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_ALLOW_HTTP", "1"), r"clap accepts only"),
    ("secret-missing", cc.check_s3_lake,
     setting(S, "server", "environment", "SHOP_S3_SECRET_ACCESS_KEY", ""),
     r"SHOP_S3_SECRET_ACCESS_KEY is not set or empty"),
    ("lakes-differ", cc.check_s3_lake,
     setting(S, "demo", "environment", "SHOP_LAKE", "s3://shop-lake/other"),
     r"do not share one lake"),
    ("bucket-not-created", cc.check_s3_lake,
     setting(S, "minio-init", "command", ["mc mb --ignore-existing shop/another-bucket"]),
     r"nothing creates the bucket 'shop-lake'"),
    ("server-before-bucket", cc.check_s3_lake,
     setting(S, "server", "depends_on", "minio-init", DELETE),
     r"'server' may start before 'minio-init' has created the bucket"),
    ("server-before-minio", cc.check_s3_lake,
     setting(S, "server", "depends_on", "minio", DELETE), r"'server' uses the S3 endpoint 'minio' without waiting"),
    ("no-server", cc.check_s3_lake, setting(S, "server", "command", ["quickstart"]),
     r"no shop-analytics service runs `serve`"),
    ("password-mismatch", cc.check_s3_credentials,
     setting(S, "minio", "environment", "MINIO_ROOT_PASSWORD", "${MINIO_ROOT_PASSWORD:-other-secret}"),
     r"'server': SHOP_S3_SECRET_ACCESS_KEY does not equal MINIO_ROOT_PASSWORD"),
    ("user-mismatch", cc.check_s3_credentials,
     setting(S, "demo", "environment", "SHOP_S3_ACCESS_KEY_ID", "minioadmin"),
     r"'demo': SHOP_S3_ACCESS_KEY_ID is 'minioadmin', but 'minio' has MINIO_ROOT_USER"),
    ("minio-default-creds", cc.check_s3_credentials,
     setting(S, "minio", "environment", DELETE), r"MINIO_ROOT_USER 'minioadmin'"),
    ("init-creds-mismatch", cc.check_s3_credentials,
     setting(S, "minio-init", "environment", "MINIO_ROOT_USER", "someone"),
     r"'minio-init': MINIO_ROOT_USER/MINIO_ROOT_PASSWORD differ"),
    ("no-minio", cc.check_s3_credentials, setting(S, "minio", "image", "bitnami/minio:2025"),
     r"there is no MinIO service"),
    ("unknown-subcommand", cc.check_commands, setting(S, "server", "command", ["no-such-subcommand"]),
     r"'no-such-subcommand' is not a subcommand of shop-analytics"),
    ("string-command", cc.check_commands, setting(S, "server", "command", "srve --listen 0.0.0.0:1"),
     r"'srve' is not a subcommand"),
    ("unknown-nested", cc.check_commands, setting(S, "demo", "command", ["generate", "nope"]),
     r"'nope' is not a subcommand of `shop-analytics generate`"),
    ("incomplete-nested", cc.check_commands, setting(S, "demo", "command", ["generate"]),
     r"stops at `generate`, which needs one of: demo"),
    ("flag-first", cc.check_commands, setting(S, "server", "command", ["--log-format", "json", "serve"]),
     r"'--log-format' is not a subcommand"),
    ("no-command", cc.check_commands, setting(S, "server", "command", DELETE), r"'server' has no `command:`"),
    ("no-subcommand-source", cc.check_commands, no_subcommands, r"cannot tell which subcommands exist"),
    ("entrypoint-shell-form", cc.check_dockerfile,
     dockerfile('ENTRYPOINT ["shop-analytics"]', "ENTRYPOINT shop-analytics"), r"shell form"),
    ("entrypoint-other", cc.check_dockerfile,
     dockerfile('ENTRYPOINT ["shop-analytics"]', 'ENTRYPOINT ["/bin/sh", "-c"]'),
     r"ENTRYPOINT is \['/bin/sh', '-c'\]"),
    ("entrypoint-only-in-builder", cc.check_dockerfile,
     both(dockerfile('ENTRYPOINT ["shop-analytics"]', ""),
          dockerfile("WORKDIR /build", 'WORKDIR /build\nENTRYPOINT ["shop-analytics"]')),
     r"no ENTRYPOINT"),
    ("port-not-exposed", cc.check_dockerfile, dockerfile("EXPOSE 50051 8000", "EXPOSE 8000"),
     r"listens on 50051 .* EXPOSEs only \[8000\]"),
    ("listen-loopback", cc.check_dockerfile,
     setting(S, "server", "environment", "SHOP_LISTEN", "127.0.0.1:50051"),
     r"reachable only inside the container"),
    ("listen-default", cc.check_dockerfile,
     both(setting(S, "server", "environment", "SHOP_LISTEN", DELETE),
          dockerfile("ENV SHOP_LISTEN=0.0.0.0:50051", "")),
     r"SHOP_LISTEN is None"),
    ("publish-other-port", cc.check_dockerfile, setting(S, "server", "ports", ["50051:50052"]),
     r"listens on 50051 but publishes container ports \[50052\]"),
    ("healthcheck-other-port", cc.check_dockerfile,
     setting(S, "server", "healthcheck", "test", ["CMD", "bash", "-c", "</dev/tcp/127.0.0.1/8000"]),
     r"does not probe the listen port 50051"),
    ("bash-on-distroless", cc.check_dockerfile,
     dockerfile("FROM debian:bookworm-slim AS runtime", "FROM gcr.io/distroless/cc-debian12 AS runtime"),
     r"the healthcheck needs bash"),
    ("missing-dockerfile", cc.check_dockerfile,
     setting(S, "server", "build", "dockerfile", "Nope.Dockerfile"), r"'Nope.Dockerfile' does not exist"),
    ("unknown-target", cc.check_dockerfile, setting(S, "server", "build", "target", "nope"),
     r"build target 'nope' is not a stage"),
    ("init-sql-missing", cc.check_bind_mounts,
     setting(S, "postgres", "volumes", ["./deploy/postgres/nope.sql:/docker-entrypoint-initdb.d/1.sql:ro"]),
     r"mounts './deploy/postgres/nope.sql', which does not exist"),
    ("undeclared-volume", cc.check_bind_mounts, setting(S, "kafka", "volumes", ["kafka-data:/data"]),
     r"the volume 'kafka-data', which the top-level `volumes:` does not declare"),
]


@pytest.mark.parametrize(
    "check, mutate, expected", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_checks_reject_a_broken_copy(project, check, mutate, expected):
    assert not any(re.search(expected, p) for p in check(project)), (
        "the unbroken files already report this"
    )
    broken = project.copy()
    mutate(broken)
    problems = check(broken)
    assert any(re.search(expected, p) for p in problems), (
        f"{check.__name__} did not report /{expected}/ on the broken copy; it said: {problems}"
    )


def test_broken_copies_leave_the_original_alone(project):
    broken = project.copy()
    setting(S, "server", "command", ["nope"])(broken)
    assert cc.command_of(project.services["server"]) == ["serve"]


def test_broken_compose_text_is_caught_end_to_end(project):
    """The same checks on YAML text, as a user's edit would produce it."""
    text = (cc.REPO / cc.COMPOSE_FILE).read_text()
    clickhouse_port = '"${SHOP_BIND_ADDRESS:-127.0.0.1}:8123:8123"'
    assert "SHOP_S3_ALLOW_HTTP: \"true\"" in text and clickhouse_port in text
    text = text.replace('SHOP_S3_ALLOW_HTTP: "true"', "SHOP_S3_ALLOWHTTP: \"true\"")
    text = text.replace(clickhouse_port, '"${SHOP_BIND_ADDRESS:-127.0.0.1}:9000:8123"')
    broken = project.copy()
    broken.compose = cc.load_compose(text)
    env_problems = cc.check_shop_env(broken)
    assert any("'server' sets SHOP_S3_ALLOWHTTP" in p for p in env_problems), env_problems
    assert any("'demo' sets SHOP_S3_ALLOWHTTP" in p for p in env_problems), env_problems
    assert any("SHOP_S3_ALLOW_HTTP must be 'true'" in p for p in cc.check_s3_lake(broken))
    assert any("host port 9000/tcp" in p for p in cc.check_host_ports(broken))
    assert any("host port 8123" in p for p in cc.check_seed_ports(broken))


def test_a_port_without_the_bind_address_is_caught_end_to_end(project):
    text = (cc.REPO / cc.COMPOSE_FILE).read_text()
    bound = '"${SHOP_BIND_ADDRESS:-127.0.0.1}:5432:5432"'
    assert bound in text
    broken = project.copy()
    broken.compose = cc.load_compose(text.replace(bound, '"5432:5432"'))
    assert cc.check_loopback_ports(broken) == [
        "service 'postgres' publishes 5432/tcp on all interfaces by default; bind it to loopback: "
        '"${SHOP_BIND_ADDRESS:-127.0.0.1}:5432:5432"'
    ]


def test_shop_bind_address_moves_every_published_port(project):
    """The operator's switch: SHOP_BIND_ADDRESS re-binds every published port at once."""
    text = (cc.REPO / cc.COMPOSE_FILE).read_text()
    default = [p for s in project.services.values() for p in cc.ports_of(s)]
    assert default and {p.host_ip for p in default} == {"127.0.0.1"}
    opened = cc.load_compose(text, {"SHOP_BIND_ADDRESS": "0.0.0.0"})["services"]
    moved = [p for s in opened.values() for p in cc.ports_of(s)]
    assert moved == [cc.Port("0.0.0.0", p.host, p.container, p.protocol) for p in default]
    exposed = project.copy()
    exposed.compose = cc.load_compose(text, {"SHOP_BIND_ADDRESS": "0.0.0.0"})
    assert len(cc.check_loopback_ports(exposed)) == len(default)


# --------------------------------------------------------------------------- the helpers


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-x}", {"A": "y"}, "y"),
        ("$A/${B}", {"A": "1", "B": "2"}, "1/2"),
        ("${A:-${B:-deep}}", {}, "deep"),
        ("${A:+set}", {"A": "1"}, "set"),
        ("${A:+set}", {}, ""),
        ("$$HOME and $${X}", {"HOME": "no"}, "$HOME and ${X}"),
        ("http://minio:9000", {}, "http://minio:9000"),
    ],
)
def test_interpolation_follows_compose(text, env, expected):
    assert cc.interpolate(text, env) == expected


@pytest.mark.parametrize("text", ["${A:?needed}", "${A", "cost: $ 5", "${A B}"])
def test_interpolation_errors(text):
    with pytest.raises(cc.InterpolationError):
        cc.interpolate(text, {})


def test_yaml_anchors_are_merged_and_unshared():
    compose = cc.load_compose(
        textwrap.dedent(
            """
            x-env: &env {SHOP_LAKE: "s3://b/p", SHOP_LOG: "${LOG:-info}"}
            x-img: &img {image: shop-analytics:local, build: {context: .}}
            services:
              a: {<<: *img, environment: {<<: *env, SHOP_LISTEN: "0.0.0.0:1"}}
              b: {<<: *img, environment: *env}
            """
        )
    )
    a, b = compose["services"]["a"], compose["services"]["b"]
    assert cc.env_of(a) == {"SHOP_LAKE": "s3://b/p", "SHOP_LOG": "info", "SHOP_LISTEN": "0.0.0.0:1"}
    a["build"]["context"] = "elsewhere"
    assert b["build"]["context"] == "."


@pytest.mark.parametrize(
    "entry, expected",
    [
        ("9000:9000", [cc.Port("", 9000, 9000, "tcp")]),
        ("127.0.0.1:5432:5432/tcp", [cc.Port("127.0.0.1", 5432, 5432, "tcp")]),
        ("[::1]:80:8080", [cc.Port("::1", 80, 8080, "tcp")]),
        ("53:53/udp", [cc.Port("", 53, 53, "udp")]),
        ("8080", [cc.Port("", None, 8080, "tcp")]),
        (9000, [cc.Port("", None, 9000, "tcp")]),
        ("9000-9001:9000-9001", [cc.Port("", 9000, 9000, "tcp"), cc.Port("", 9001, 9001, "tcp")]),
        ({"target": 80, "published": "8080", "host_ip": "127.0.0.1"}, [cc.Port("127.0.0.1", 8080, 80, "tcp")]),
    ],
)
def test_port_syntax(entry, expected):
    assert cc.ports_of({"ports": [entry]}) == expected


RUST_CLI = r'''
/// The CLI. A doc comment with { braces } and "quotes".
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve it. // not a comment end }
    Serve(ServeArgs),
    /// Nested through an args struct.
    Ingest(IngestArgs),
    #[command(subcommand)]
    Generate(GenerateCommand),
    #[command(name = "refresh-all", visible_alias = "refresh")]
    RefreshAll { #[arg(long, help = "s3://x/{y}")] days: u32 },
    #[command(skip)]
    Internal,
    QuickStart,
}

struct IngestArgs {
    #[command(subcommand)]
    pub source: IngestSource,
}

enum IngestSource { Postgres(PgArgs), Kafka { #[arg(long)] topic: String }, Products }

/* enum Fake { Nope } */
enum GenerateCommand { Demo { scale: f64 } }
'''


def test_subcommand_scan_of_rust_source():
    assert cc.scan_subcommands_source(RUST_CLI) == {
        "serve": {},
        "ingest": {"postgres": {}, "kafka": {}, "products": {}},
        "generate": {"demo": {}},
        "refresh-all": {},
        "refresh": {},
        "quick-start": {},
    }


def test_subcommand_scan_fails_loudly_without_the_enum():
    with pytest.raises(ValueError, match="no `enum Command` found"):
        cc.scan_subcommands_source("struct Other;")


HELP = """\
The shop.

Usage: shop-analytics [OPTIONS] <COMMAND>

Commands:
  quickstart  Generate a demo shop into a local lake (if it is empty), build the daily aggregates
              and serve them over Flight SQL. Needs no external service
  serve       Serve an existing lake over Flight SQL
  generate    Write generated data into the lake
  help        Print this message or the help of the given subcommand(s)

Options:
  -h, --help  Print help
"""


def test_help_parsing():
    assert cc.parse_help_commands(HELP) == ["quickstart", "serve", "generate"]


def _fake_binary(path: Path) -> Path:
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "generate --help" ]; then printf "Commands:\\n  demo  Demo\\n  help  Help\\n"; exit 0; fi\n'
        'if [ "$1" = --help ]; then printf "Commands:\\n  serve  S\\n  generate  G\\n"; exit 0; fi\n'
        'printf "Usage: x\\n"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_subcommands_fall_back_to_the_binary(tmp_path, monkeypatch):
    binary = _fake_binary(tmp_path / "shop-analytics")
    monkeypatch.setattr(cc, "binary_candidates", lambda: [binary])
    tree, origin = cc.discover_subcommands(tmp_path)  # no cli/src here
    assert tree == {"serve": {}, "generate": {"demo": {}}}
    assert str(binary) in origin


def test_subcommand_discovery_fails_when_nothing_works(tmp_path, monkeypatch):
    monkeypatch.setattr(cc, "binary_candidates", lambda: [tmp_path / "missing"])
    tree, why = cc.discover_subcommands(tmp_path)
    assert tree is None and "no built binary" in why


def test_env_scan_reads_clap_and_std_env(tmp_path):
    (tmp_path / "cli/src").mkdir(parents=True)
    (tmp_path / "cli/src/config.rs").write_text(
        '#[arg(long, env = "SHOP_LAKE")]\nlet s = std::env::var("SHOP_S3_SECRET_ACCESS_KEY");\n'
        'let t = env::var_os( "SHOP_X" );\nlet u = "SHOP_NOT_READ";\n'
    )
    (tmp_path / "test-support/src").mkdir(parents=True)
    (tmp_path / "test-support/src/lib.rs").write_text('env::var("SHOP_TEST_PG_URL")')
    assert cc.scan_app_env(tmp_path) == {"SHOP_LAKE", "SHOP_S3_SECRET_ACCESS_KEY", "SHOP_X"}


def test_dockerfile_parsing():
    stages = cc.parse_dockerfile(
        textwrap.dedent(
            """\
            # syntax=docker/dockerfile:1
            ARG V=1
            FROM rust:${V} AS builder
            RUN a \\
                && b
            ENTRYPOINT ["cargo"]
            FROM builder AS mid
            ENV A=1 B="two words"
            FROM --platform=$BUILDPLATFORM mid
            ENV C 3
            EXPOSE 50051/tcp 8000-8001
            ENTRYPOINT ["/usr/local/bin/shop-analytics"]
            """
        )
    )
    assert [(s.base, s.name) for s in stages] == [("rust:${V}", "builder"), ("builder", "mid"), ("mid", None)]
    assert stages[0].all("RUN")[0].split() == ["a", "&&", "b"]
    assert cc.exposed_ports(stages[2]) == {50051, 8000, 8001}
    assert cc.stage_env(stages, stages[2]) == {"A": "1", "B": "two words", "C": "3"}
    assert cc.exec_form(stages[2].last("ENTRYPOINT")) == ["/usr/local/bin/shop-analytics"]
