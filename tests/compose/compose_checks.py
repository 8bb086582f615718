"""Static checks of docker-compose.yml and the Dockerfile: no Docker engine needed.

Every ``check_*`` function takes a :class:`Project` and returns a list of problems, each a
sentence naming the service and what to change; an empty list means the check passed.
``test_compose.py`` runs each check as its own test and also runs them against deliberately
broken copies, to show that they catch what they claim to.

What the app accepts is read from the repository, never hard-coded here:

* the ``SHOP_*`` variables: ``env = "SHOP_..."`` (clap) and ``env::var("SHOP_...")`` in the
  Rust sources of the workspace's crates (the members of the root Cargo.toml but test-support);
* the subcommands: the clap ``#[derive(Subcommand)]`` enums under cli/src, or, if that
  scan finds nothing, the ``--help`` of a built binary ($SHOP_BIN, else
  ~/.cache/shop-analytics/target/debug/shop-analytics).

``${VAR:-default}`` references are expanded the way Compose does, with an empty environment,
so the checks see the defaults a user gets without a .env file.

Run directly for a report: ``python3 tests/compose/compose_checks.py``.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = "docker-compose.yml"


def _workspace_members() -> tuple[str, ...]:
    """The product's crates (their folders), from the root Cargo.toml; test-support reads only
    the tests' own variables."""
    import tomllib

    with open(REPO / "Cargo.toml", "rb") as f:
        members = tomllib.load(f)["workspace"]["members"]
    return tuple(m for m in members if m != "test-support")


RUST_DIRS = _workspace_members()
CLI_SOURCES = "cli/src"
DEFAULT_BINARY = Path.home() / ".cache/shop-analytics/target/debug/shop-analytics"

HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"
# Host ports that users of the seed system know: port -> (what, image that must publish it).
SEED_PORTS = {
    9001: ("the MinIO console", "minio/minio"),
    8123: ("the ClickHouse HTTP interface", "clickhouse/clickhouse-server"),
}
# Host ports kept for services still to come: only a shop-analytics service may publish them.
RESERVED_PORTS = {8000: "the shop REST API"}
# Every host port is published on loopback unless the operator sets this variable (and then
# real passwords, SHOP_AUTH_USERS and TLS): "${SHOP_BIND_ADDRESS:-127.0.0.1}:9000:9000".
BIND_VARIABLE = "SHOP_BIND_ADDRESS"
LOOPBACK = "127.0.0.1"
LONG_RUNNING_RESTARTS = {"always", "unless-stopped"}


class InterpolationError(ValueError):
    pass


# --------------------------------------------------------------------------- interpolation


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expands ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:+a}``, ``${VAR+a}``,
    ``${VAR:?e}``, ``${VAR?e}`` and ``$$`` like Docker Compose (nested defaults included)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "{":
            depth, j = 0, i + 1
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise InterpolationError(f"unclosed '${{' in {text!r}")
            out.append(_expand(text[i + 2 : j], env, text))
            i = j + 1
        else:
            name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
            if not name:
                raise InterpolationError(
                    f"invalid interpolation in {text!r}: a lone '$' (write '$$' for a literal $)"
                )
            out.append(env.get(name.group(0), ""))
            i += 1 + len(name.group(0))
    return "".join(out)


def _expand(expr: str, env: dict[str, str], whole: str) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", expr, re.S)
    if not match:
        raise InterpolationError(f"invalid interpolation '${{{expr}}}' in {whole!r}")
    name, op, arg = match.groups()
    value = env.get(name)
    if op is None:
        return value or ""
    if op == ":-":
        return value if value else interpolate(arg, env)
    if op == "-":
        return value if value is not None else interpolate(arg, env)
    if op == ":+":
        return interpolate(arg, env) if value else ""
    if op == "+":
        return interpolate(arg, env) if value is not None else ""
    if (op == ":?" and not value) or (op == "?" and value is None):
        raise InterpolationError(f"${{{name}}} is required ({arg or 'no message'})")
    return value or ""


def interpolate_tree(node, env: dict[str, str]):
    """Interpolates every string value (not the keys) of a parsed compose document."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(text: str, env: dict[str, str] | None = None) -> dict:
    """Parses and interpolates a compose file; YAML anchors and ``<<`` merges are resolved
    and no two services share a nested object afterwards."""
    document = yaml.safe_load(text)
    if not isinstance(document, dict):
        raise ValueError("the compose file is not a YAML mapping")
    document = json.loads(json.dumps(document))  # un-share anchored objects
    return interpolate_tree(document, env or {})


# --------------------------------------------------------------------------- repository scans

_SHOP_ENV_PATTERNS = (
    re.compile(r"\benv\s*=\s*\"(SHOP_[A-Z0-9_]+)\""),
    re.compile(r"\benv::var(?:_os)?\s*\(\s*\"(SHOP_[A-Z0-9_]+)\""),
)


def scan_app_env(root: Path, dirs=RUST_DIRS) -> set[str]:
    """The SHOP_* variables the Rust sources read, via clap or std::env."""
    names: set[str] = set()
    for directory in dirs:
        for path in sorted((root / directory).rglob("*.rs")):
            if "target" in path.relative_to(root).parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            for pattern in _SHOP_ENV_PATTERNS:
                names.update(pattern.findall(text))
    return names


def strip_rust_comments(text: str) -> str:
    """Removes // and /* */ comments (doc comments too), leaving string literals intact."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start``, skipping string literals."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif char in pairs:
            stack.append(pairs[char])
        elif char in ")]}":
            if char != stack.pop():
                raise ValueError(f"unbalanced {char!r} at {i}")
            if not stack:
                return i
        i += 1
    raise ValueError("unbalanced brackets")


def _items(kind: str, text: str) -> dict[str, str]:
    """``{name: body}`` of every ``enum``/``struct`` with a braced body."""
    found = {}
    for match in re.finditer(rf"\b{kind}\s+([A-Za-z_]\w*)\s*(?:<[^{{]*>)?\s*\{{", text):
        start = match.end() - 1
        found[match.group(1)] = text[start + 1 : _closing(text, start)]
    return found


def _variants(body: str):
    """``(name, attributes, payload)`` of each variant of an enum body."""
    attrs: list[str] = []
    i = 0
    while i < len(body):
        if body[i].isspace() or body[i] == ",":
            i += 1
        elif body.startswith("#[", i):
            end = _closing(body, i + 1)
            attrs.append(body[i + 2 : end])
            i = end + 1
        else:
            ident = re.compile(r"[A-Za-z_]\w*").match(body, i)
            if not ident:
                raise ValueError(f"cannot parse the enum near {body[i : i + 40]!r}")
            i = ident.end()
            while i < len(body) and body[i].isspace():
                i += 1
            payload = None
            if i < len(body) and body[i] in "({":
                end = _closing(body, i)
                payload = body[i : end + 1]
                i = end + 1
            if i < len(body) and body[i] == "=":  # explicit discriminant
                while i < len(body) and body[i] != ",":
                    i += 1
            yield ident.group(0), attrs, payload
            attrs = []


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


_SUBCOMMAND_FIELD = re.compile(
    r"#\[\s*command\s*\(\s*subcommand\s*\)\s*\]\s*(?:pub(?:\([^)]*\))?\s+)?\w+\s*:\s*"
    r"(?:Option\s*<\s*)?(?:Box\s*<\s*)?([A-Za-z_]\w*)"
)


def scan_subcommands_source(text: str, root_enum: str | None = None) -> dict:
    """The clap subcommand tree ``{name: {child: {...}}}`` from Rust source text."""
    text = strip_rust_comments(text)
    enums, structs = _items("enum", text), _items("struct", text)
    if root_enum is None:
        cli = structs.get("Cli", "")
        match = _SUBCOMMAND_FIELD.search(cli)
        root_enum = match.group(1) if match else "Command"
    if root_enum not in enums:
        raise ValueError(f"no `enum {root_enum}` found")

    def nested_enum(attrs: list[str], payload: str | None) -> str | None:
        if not payload:
            return None
        if payload.startswith("(") and any(
            re.search(r"\bcommand\s*\((?:[^()]|\([^()]*\))*\bsubcommand\b", a) for a in attrs
        ):
            inner = re.sub(r"\bBox\s*<\s*(\w+)\s*>", r"\1", payload[1:-1]).strip()
            return inner if inner in enums else None
        if payload.startswith("{"):
            match = _SUBCOMMAND_FIELD.search(payload)
            return match.group(1) if match and match.group(1) in enums else None
        inner = payload[1:-1].strip()  # Variant(Args): Args may hold a subcommand field
        match = _SUBCOMMAND_FIELD.search(structs.get(inner, ""))
        return match.group(1) if match and match.group(1) in enums else None

    def tree(enum_name: str, depth: int) -> dict:
        result = {}
        for name, attrs, payload in _variants(enums[enum_name]):
            joined = " ".join(attrs)
            if re.search(r"\bcommand\s*\([^)]*\b(skip|external_subcommand)\b", joined):
                continue
            renamed = re.search(r"\bcommand\s*\((?:[^()]|\([^()]*\))*\bname\s*=\s*\"([^\"]+)\"", joined)
            child = nested_enum(attrs, payload)
            subtree = tree(child, depth + 1) if child and depth < 4 else {}
            names = [renamed.group(1) if renamed else _kebab(name)]
            names += re.findall(r"\b(?:visible_)?alias\s*=\s*\"([^\"]+)\"", joined)
            for alias in names:
                result[alias] = subtree
        return result

    found = tree(root_enum, 0)
    if not found:
        raise ValueError(f"`enum {root_enum}` has no variants")
    return found


def parse_help_commands(help_text: str) -> list[str]:
    """Subcommand names from a clap ``--help`` ("Commands:" section, without ``help``)."""
    names, inside = [], False
    for line in help_text.splitlines():
        if re.match(r"^(Commands|Subcommands):\s*$", line):
            inside = True
        elif inside:
            if not line.strip() or not line.startswith(" "):
                break
            match = re.match(r"^ {2}([A-Za-z0-9][\w-]*)(?:,\s*\S+)*(?:\s{2,}|$)", line)
            if match and match.group(1) != "help":
                names.append(match.group(1))
    return names


def subcommands_from_binary(binary: Path, prefix: tuple[str, ...] = (), depth: int = 0) -> dict:
    result = subprocess.run(
        [str(binary), *prefix, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"`{binary} {' '.join(prefix)} --help` failed: {result.stderr.strip()}")
    names = parse_help_commands(result.stdout)
    if not prefix and not names:
        raise RuntimeError(f"`{binary} --help` lists no commands")
    return {
        name: subcommands_from_binary(binary, (*prefix, name), depth + 1) if depth < 3 else {}
        for name in names
    }


def binary_candidates() -> list[Path]:
    paths = []
    if os.environ.get("SHOP_BIN"):
        paths.append(Path(os.environ["SHOP_BIN"]))
    if os.environ.get("CARGO_TARGET_DIR"):
        paths.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug/shop-analytics")
    paths += [DEFAULT_BINARY, REPO / "target/debug/shop-analytics"]
    return paths


def discover_subcommands(root: Path) -> tuple[dict | None, str]:
    """``(tree, where it came from)``, or ``(None, why neither way worked)``."""
    errors = []
    sources = sorted((root / CLI_SOURCES).rglob("*.rs"))
    if sources:
        text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in sources)
        try:
            return scan_subcommands_source(text), f"the clap enums under {CLI_SOURCES}/"
        except ValueError as e:
            errors.append(f"source scan of {CLI_SOURCES}/: {e}")
    else:
        errors.append(f"no Rust sources under {root / CLI_SOURCES}")
    for binary in binary_candidates():
        if binary.is_file() and os.access(binary, os.X_OK):
            try:
                return subcommands_from_binary(binary), f"`{binary} --help`"
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                errors.append(str(e))
    errors.append("no built binary at " + ", ".join(map(str, binary_candidates())))
    return None, "; ".join(errors)


# --------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [args for kw, args in self.instructions if kw == keyword]
        return values[-1] if values else None

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """The build stages with their instructions (continuations joined, comments dropped)."""
    logical, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            logical.append(current.strip())
        current = ""
    if current.strip():
        logical.append(current.strip())
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0] if words else "", name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def exposed_ports(stage: Stage) -> set[int]:
    ports = set()
    for args in stage.all("EXPOSE"):
        for token in args.split():
            number = token.split("/")[0]
            if re.fullmatch(r"\d+-\d+", number):
                low, high = map(int, number.split("-"))
                ports.update(range(low, high + 1))
            elif number.isdigit():
                ports.add(int(number))
    return ports


def stage_env(stages: list[Stage], stage: Stage) -> dict[str, str]:
    """ENV values in ``stage``, including those of the stages it is built FROM."""
    by_name = {s.name: s for s in stages if s.name}
    chain, seen = [], set()
    while stage is not None and id(stage) not in seen:
        seen.add(id(stage))
        chain.append(stage)
        stage = by_name.get(stage.base)
    env: dict[str, str] = {}
    for current in reversed(chain):
        for args in current.all("ENV"):
            words = shlex.split(args)
            if words and "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])
            else:
                env.update(w.split("=", 1) for w in words if "=" in w)
    return env


# --------------------------------------------------------------------------- the project


@dataclass
class Project:
    root: Path
    compose: dict
    app_env: set[str]
    subcommands: dict | None
    subcommands_from: str
    # Text that replaces a file of the repository (relative path -> text), for tests.
    overrides: dict[str, str] = field(default_factory=dict)

    def read(self, relative: str) -> str | None:
        key = str(PurePosixPath(relative))
        if key in self.overrides:
            return self.overrides[key]
        path = self.root / relative
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def exists(self, relative: str) -> bool:
        return str(PurePosixPath(relative)) in self.overrides or (self.root / relative).exists()

    def copy(self) -> Project:
        return copy.deepcopy(self)

    @property
    def services(self) -> dict[str, dict]:
        services = self.compose.get("services")
        return services if isinstance(services, dict) else {}


def load_project(root: Path = REPO) -> Project:
    text = (root / COMPOSE_FILE).read_text(encoding="utf-8")
    tree, origin = discover_subcommands(root)
    return Project(
        root=root,
        compose=load_compose(text),
        app_env=scan_app_env(root),
        subcommands=tree,
        subcommands_from=origin,
    )


# --------------------------------------------------------------------------- service helpers


def scalar(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_of(service: dict) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, dict):
        return {str(k): scalar(v) for k, v in environment.items()}
    result = {}
    for item in environment:
        key, sep, value = str(item).partition("=")
        result[key] = value if sep else None
    return result


def image_of(service: dict) -> str:
    return str(service.get("image") or "")


def image_is(service: dict, repository: str) -> bool:
    """Whether the image is ``repository`` (any tag/digest, optional docker.io/ or quay.io/)."""
    image = re.sub(r"^(docker\.io/|quay\.io/|registry-1\.docker\.io/)", "", image_of(service))
    return re.fullmatch(rf"{re.escape(repository)}(?::[^/@]+)?(?:@\S+)?", image) is not None


def build_of(service: dict) -> tuple[str, str, str | None] | None:
    """``(context, dockerfile, target)`` of a service built from this repository."""
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        return build, "Dockerfile", None
    return str(build.get("context", ".")), str(build.get("dockerfile", "Dockerfile")), build.get("target")


def is_shop_service(service: dict) -> bool:
    """Runs the shop-analytics image: built from this repository or tagged shop-analytics."""
    name = re.split(r"[:@]", image_of(service).rsplit("/", 1)[-1])[0]
    return name == "shop-analytics" or build_of(service) is not None


def shop_services(project: Project) -> dict[str, dict]:
    return {n: s for n, s in project.services.items() if is_shop_service(s)}


def tokens(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def command_of(service: dict) -> list[str] | None:
    return tokens(service.get("command"))


def server_services(project: Project) -> dict[str, dict]:
    """The shop-analytics services that run the Flight SQL server."""
    return {
        n: s for n, s in shop_services(project).items() if (command_of(s) or [None])[0] == "serve"
    }


def depends_on(service: dict) -> dict[str, str | None]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {str(d): None for d in deps}
    return {str(k): (v or {}).get("condition") for k, v in deps.items()}


def healthcheck_of(service: dict):
    check = service.get("healthcheck")
    if not isinstance(check, dict) or check.get("disable"):
        return None
    test = check.get("test")
    if not test or test == ["NONE"]:
        return None
    return test


def healthcheck_text(service: dict) -> str:
    test = healthcheck_of(service)
    return " ".join(test) if isinstance(test, list) else str(test or "")


def profiles_of(service: dict) -> list[str]:
    return list(service.get("profiles") or [])


def is_one_shot(project: Project, name: str) -> bool:
    """A job that runs and exits: ``restart: "no"`` and either depended on with
    ``service_completed_successfully`` or started only through a profile."""
    service = project.services[name]
    if scalar(service.get("restart")) != "no":
        return False
    adopted = any(
        depends_on(other).get(name) == COMPLETED for other in project.services.values()
    )
    return adopted or bool(profiles_of(service))


@dataclass(frozen=True)
class Port:
    host_ip: str
    host: int | None
    container: int
    protocol: str


def _port_range(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-", 1)
        return list(range(int(low), int(high) + 1))
    return [int(text)]


def ports_of(service: dict) -> list[Port]:
    result = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            result.append(
                Port(
                    str(entry.get("host_ip") or ""),
                    int(str(published).split("-")[0]) if published not in (None, "") else None,
                    int(entry["target"]),
                    str(entry.get("protocol") or "tcp"),
                )
            )
            continue
        text = str(entry)
        text, _, protocol = text.partition("/")
        host_ip = ""
        if text.startswith("["):
            host_ip, _, text = text[1:].partition("]:")
        parts = text.split(":")
        if len(parts) == 3:
            host_ip, host, container = parts
        elif len(parts) == 2:
            host, container = parts
        else:
            host, container = "", parts[0]
        containers = _port_range(container)
        hosts = _port_range(host) if host else [None] * len(containers)
        if len(hosts) == 1 and len(containers) > 1:
            hosts = [hosts[0]] + [None] * (len(containers) - 1)
        for h, c in zip(hosts, containers):
            result.append(Port(host_ip, h, c, protocol or "tcp"))
    return result


def container_ports(service: dict) -> set[int]:
    """Ports a service listens on inside the network: published targets and ``expose``."""
    ports = {p.container for p in ports_of(service)}
    for entry in service.get("expose") or []:
        ports.update(_port_range(str(entry).split("/")[0]))
    return ports


# --------------------------------------------------------------------------- the checks


def check_top_level(project: Project) -> list[str]:
    problems = []
    if "version" in project.compose:
        problems.append("the top-level `version:` key is obsolete in the Compose spec; remove it")
    if not project.services:
        problems.append("there is no `services:` mapping")
    for name, service in project.services.items():
        if not isinstance(service, dict) or not (service.get("image") or service.get("build")):
            problems.append(f"service {name!r} has neither `image:` nor `build:`")
    return problems


def check_healthchecks(project: Project) -> list[str]:
    problems = []
    for name, service in project.services.items():
        if healthcheck_of(service) is None and not is_one_shot(project, name):
            problems.append(
                f"service {name!r} keeps running but has no healthcheck: add one, or, if it is a "
                f"one-shot job, give it `restart: \"no\"` and let a service depend on it with "
                f"`condition: {COMPLETED}` (or put it in a profile)"
            )
    return problems


def check_depends_on(project: Project) -> list[str]:
    problems = []
    services = project.services
    for name, service in services.items():
        raw = service.get("depends_on")
        if isinstance(raw, list):
            problems.append(
                f"service {name!r}: `depends_on` uses the short list form, which only waits for "
                f"the containers to start; give each dependency a `condition:`"
            )
            continue
        for target, condition in depends_on(service).items():
            if target not in services:
                problems.append(f"service {name!r} depends on {target!r}, which is not a service")
                continue
            if condition not in (HEALTHY, COMPLETED):
                problems.append(
                    f"service {name!r} depends on {target!r} with condition {condition!r}; use "
                    f"{HEALTHY!r} (long-running) or {COMPLETED!r} (one-shot job)"
                )
            elif condition == HEALTHY and healthcheck_of(services[target]) is None:
                problems.append(
                    f"service {name!r} waits for {target!r} to be healthy, but {target!r} has no "
                    f"healthcheck"
                )
            elif condition == COMPLETED and scalar(services[target].get("restart")) in LONG_RUNNING_RESTARTS:
                problems.append(
                    f"service {name!r} waits for {target!r} to complete, but {target!r} is "
                    f"restarted forever (restart: {services[target].get('restart')})"
                )
            if not profiles_of(service) and profiles_of(services[target]):
                problems.append(
                    f"service {name!r} (always started) depends on {target!r}, which only starts "
                    f"with the profiles {profiles_of(services[target])}"
                )
    return problems


def check_one_shot_jobs_are_adopted(project: Project) -> list[str]:
    """`docker compose up --wait` reports an exited job as a failure unless a running service
    depends on it with service_completed_successfully."""
    problems = []
    services = project.services
    for name, service in services.items():
        if profiles_of(service) or not is_one_shot(project, name):
            continue
        adopters = [
            other
            for other, s in services.items()
            if depends_on(s).get(name) == COMPLETED
            and not profiles_of(s)
            and not is_one_shot(project, other)
        ]
        if not adopters:
            problems.append(
                f"one-shot job {name!r} is not depended on (condition {COMPLETED!r}) by any "
                f"long-running service: `docker compose up --wait` would report its exit as a failure"
            )
    return problems


def check_host_ports(project: Project) -> list[str]:
    problems, seen = [], {}
    for name, service in project.services.items():
        for port in ports_of(service):
            if port.host is None:
                continue
            key = (port.host, port.protocol)
            for other_name, other_ip in seen.get(key, []):
                wildcard = {"", "0.0.0.0", "::"}
                if port.host_ip in wildcard or other_ip in wildcard or port.host_ip == other_ip:
                    where = f"{name!r}" if other_name != name else "it twice"
                    problems.append(
                        f"host port {port.host}/{port.protocol} is published by {other_name!r} "
                        f"and by {where}"
                    )
            seen.setdefault(key, []).append((name, port.host_ip))
    return problems


def check_seed_ports(project: Project) -> list[str]:
    problems = []
    publishers: dict[int, list[str]] = {}
    for name, service in project.services.items():
        for port in ports_of(service):
            if port.host is not None:
                publishers.setdefault(port.host, []).append(name)
    for port, (what, image) in SEED_PORTS.items():
        names = publishers.get(port, [])
        if not names:
            problems.append(f"host port {port} ({what}, as in the seed system) is not published")
        for name in names:
            if not image_is(project.services[name], image):
                problems.append(
                    f"host port {port} should be {what} ({image}), but {name!r} "
                    f"({image_of(project.services[name]) or 'built'}) publishes it"
                )
    for port, what in RESERVED_PORTS.items():
        for name in publishers.get(port, []):
            if not is_shop_service(project.services[name]):
                problems.append(f"host port {port} is kept for {what}, but {name!r} publishes it")
    return problems


def check_loopback_ports(project: Project) -> list[str]:
    """Without a .env, nothing is published beyond this machine: every published port binds
    to 127.0.0.1 (written as ``${SHOP_BIND_ADDRESS:-127.0.0.1}:host:container`` so an
    operator can choose other interfaces on purpose)."""
    problems = []
    for name, service in project.services.items():
        for port in ports_of(service):
            if port.host_ip == LOOPBACK:
                continue
            where = f"on {port.host_ip}" if port.host_ip else "on all interfaces"
            host = port.host if port.host is not None else port.container
            suffix = "" if port.protocol == "tcp" else f"/{port.protocol}"
            problems.append(
                f"service {name!r} publishes {port.container}/{port.protocol} {where} by default; "
                f"bind it to loopback: "
                f"\"${{{BIND_VARIABLE}:-{LOOPBACK}}}:{host}:{port.container}{suffix}\""
            )
    return problems


def check_shop_env(project: Project) -> list[str]:
    if not project.app_env:
        return [
            f"found no SHOP_* variables in the Rust sources under {', '.join(RUST_DIRS)} "
            f"(looked for `env = \"SHOP_…\"` and `env::var(\"SHOP_…\")`): the scan is broken"
        ]
    problems = []
    for name, service in shop_services(project).items():
        for key in env_of(service):
            if key.startswith("SHOP_") and key not in project.app_env:
                close = difflib.get_close_matches(key, sorted(project.app_env), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(
                    f"service {name!r} sets {key}, which shop-analytics does not read{hint}"
                )
    return problems


def _endpoint_target(project: Project, endpoint: str) -> tuple[str | None, int | None, str]:
    parts = urlsplit(endpoint)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.hostname, port, parts.scheme


def _bucket_creators(project: Project, bucket: str) -> list[str]:
    pattern = re.compile(rf"\bmb\b[^\n;&|]*?[/\s]{re.escape(bucket)}(?=[\s/\"';&|]|$)", re.M)
    found = []
    for name, service in project.services.items():
        script = " ".join(tokens(service.get("entrypoint")) or []) + "\n"
        script += "\n".join(tokens(service.get("command")) or [])
        if pattern.search(script):
            found.append(name)
    return found


def check_s3_lake(project: Project) -> list[str]:
    problems = []
    servers = server_services(project)
    if not servers:
        problems.append("no shop-analytics service runs `serve` (the Flight SQL server)")
    lakes = {}
    for name, service in shop_services(project).items():
        env = env_of(service)
        lake = env.get("SHOP_LAKE")
        if lake is None and name not in servers:
            continue
        lakes[name] = (lake, env.get("SHOP_S3_ENDPOINT"))
        if not lake or not lake.startswith("s3://") or not urlsplit(lake).netloc:
            problems.append(
                f"service {name!r}: SHOP_LAKE is {lake!r}; in compose the lake lives in MinIO, "
                f"so it must be s3://<bucket>/<prefix>"
            )
            continue
        bucket = urlsplit(lake).netloc
        endpoint = env.get("SHOP_S3_ENDPOINT")
        if not endpoint:
            problems.append(f"service {name!r}: SHOP_S3_ENDPOINT is not set (it would go to AWS)")
        else:
            host, port, scheme = _endpoint_target(project, endpoint)
            if scheme not in ("http", "https") or not host:
                problems.append(f"service {name!r}: SHOP_S3_ENDPOINT {endpoint!r} is not an http(s) URL")
            elif host not in project.services:
                problems.append(
                    f"service {name!r}: SHOP_S3_ENDPOINT {endpoint!r} names host {host!r}, which is "
                    f"not a compose service"
                )
            else:
                if port not in container_ports(project.services[host]):
                    problems.append(
                        f"service {name!r}: SHOP_S3_ENDPOINT {endpoint!r} uses port {port}, but "
                        f"{host!r} exposes only {sorted(container_ports(project.services[host]))}"
                    )
                if depends_on(service).get(host) != HEALTHY:
                    problems.append(
                        f"service {name!r} uses the S3 endpoint {host!r} without waiting for it "
                        f"(depends_on: {host}: condition: {HEALTHY})"
                    )
            allow = env.get("SHOP_S3_ALLOW_HTTP")
            if allow is not None and allow not in ("true", "false"):
                problems.append(
                    f"service {name!r}: SHOP_S3_ALLOW_HTTP={allow!r}, but clap accepts only "
                    f"'true' or 'false'"
                )
            if scheme == "http" and allow != "true":
                problems.append(
                    f"service {name!r}: SHOP_S3_ENDPOINT is plain http, so SHOP_S3_ALLOW_HTTP "
                    f"must be 'true' (it is {allow!r})"
                )
        for key in ("SHOP_S3_ACCESS_KEY_ID", "SHOP_S3_SECRET_ACCESS_KEY"):
            if not env.get(key):
                problems.append(f"service {name!r}: {key} is not set or empty")
        creators = _bucket_creators(project, bucket)
        if not creators:
            problems.append(
                f"service {name!r}: nothing creates the bucket {bucket!r} of SHOP_LAKE "
                f"(expected a one-shot job running `mc mb … /{bucket}`)"
            )
        for creator in creators:
            if creator != name and depends_on(service).get(creator) != COMPLETED:
                problems.append(
                    f"service {name!r} may start before {creator!r} has created the bucket "
                    f"{bucket!r} (depends_on: {creator}: condition: {COMPLETED})"
                )
    if len(set(lakes.values())) > 1:
        listing = ", ".join(f"{n}: {lake} via {ep}" for n, (lake, ep) in sorted(lakes.items()))
        problems.append(f"the shop-analytics services do not share one lake: {listing}")
    return problems


def _minio_credentials(service: dict) -> tuple[str, str]:
    env = env_of(service)
    return env.get("MINIO_ROOT_USER") or "minioadmin", env.get("MINIO_ROOT_PASSWORD") or "minioadmin"


def check_s3_credentials(project: Project) -> list[str]:
    problems = []
    minios = {n: s for n, s in project.services.items() if image_is(s, "minio/minio")}
    if not minios:
        return ["there is no MinIO service (image minio/minio)"]
    for name, service in shop_services(project).items():
        env = env_of(service)
        endpoint = env.get("SHOP_S3_ENDPOINT")
        if not endpoint:
            continue
        host, _, _ = _endpoint_target(project, endpoint)
        if host not in minios:
            continue
        user, password = _minio_credentials(minios[host])
        if env.get("SHOP_S3_ACCESS_KEY_ID") != user:
            problems.append(
                f"service {name!r}: SHOP_S3_ACCESS_KEY_ID is {env.get('SHOP_S3_ACCESS_KEY_ID')!r}, "
                f"but {host!r} has MINIO_ROOT_USER {user!r}"
            )
        if env.get("SHOP_S3_SECRET_ACCESS_KEY") != password:
            problems.append(
                f"service {name!r}: SHOP_S3_SECRET_ACCESS_KEY does not equal MINIO_ROOT_PASSWORD "
                f"of {host!r}"
            )
    for name, service in project.services.items():
        if name in minios:
            continue
        env = env_of(service)
        if "MINIO_ROOT_USER" in env or "MINIO_ROOT_PASSWORD" in env:
            for minio_name, minio in minios.items():
                if _minio_credentials(service) != _minio_credentials(minio):
                    problems.append(
                        f"service {name!r}: MINIO_ROOT_USER/MINIO_ROOT_PASSWORD differ from those "
                        f"of {minio_name!r}"
                    )
    return problems


def check_commands(project: Project) -> list[str]:
    tree = project.subcommands
    if tree is None:
        return [f"cannot tell which subcommands exist: {project.subcommands_from}"]
    problems = []
    for name, service in shop_services(project).items():
        command = command_of(service)
        if not command:
            problems.append(
                f"service {name!r} has no `command:`; the image would only print --help"
            )
            continue
        level, path = tree, []
        for word in command:
            if not level:
                break
            if word not in level:
                what = f"`shop-analytics {' '.join(path)}`" if path else "shop-analytics"
                problems.append(
                    f"service {name!r}: command {command} — {word!r} is not a subcommand of "
                    f"{what} (it has: {', '.join(sorted(level))}; read from {project.subcommands_from})"
                )
                break
            path.append(word)
            level = level[word]
        else:
            if level:
                problems.append(
                    f"service {name!r}: command {command} stops at `{' '.join(path)}`, which needs "
                    f"one of: {', '.join(sorted(level))}"
                )
    return problems


def _listen(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    match = re.fullmatch(r"\[?([^\]]*)\]?:(\d+)", value)
    return (match.group(1), int(match.group(2))) if match else None


def check_dockerfile(project: Project) -> list[str]:
    problems = []
    builds = {n: build_of(s) for n, s in shop_services(project).items() if build_of(s)}
    if not builds:
        return ["no service builds the shop-analytics image from this repository (`build:`)"]
    for name, (context, dockerfile, target) in sorted(builds.items()):
        path = str(PurePosixPath(context) / dockerfile)
        if not project.exists(context):
            problems.append(f"service {name!r}: the build context {context!r} does not exist")
        text = project.read(path)
        if text is None:
            problems.append(f"service {name!r}: the Dockerfile {path!r} does not exist")
            continue
        stages = parse_dockerfile(text)
        if not stages:
            problems.append(f"{path}: no FROM")
            continue
        named = {s.name: s for s in stages if s.name}
        if target and target not in named:
            problems.append(f"service {name!r}: build target {target!r} is not a stage of {path}")
            continue
        final = named[target] if target else stages[-1]
        label = f"{path} (stage {final.name or len(stages)})"
        entrypoint = final.last("ENTRYPOINT")
        form = exec_form(entrypoint) if entrypoint else None
        if entrypoint is None:
            problems.append(f"{label}: no ENTRYPOINT; it must be [\"shop-analytics\"]")
        elif form is None:
            problems.append(
                f"{label}: ENTRYPOINT {entrypoint} is in shell form; use the exec form "
                f"[\"shop-analytics\"] so the server gets SIGTERM"
            )
        elif not form or PurePosixPath(form[0]).name != "shop-analytics":
            problems.append(f"{label}: ENTRYPOINT is {form}, not [\"shop-analytics\"]")
        exposed = exposed_ports(final)
        if name in server_services(project):
            service = project.services[name]
            listen_value = env_of(service).get("SHOP_LISTEN") or stage_env(stages, final).get("SHOP_LISTEN")
            listen = _listen(listen_value)
            if listen is None:
                problems.append(
                    f"service {name!r}: SHOP_LISTEN is {listen_value!r}; the server would listen on "
                    f"127.0.0.1:50051, which nothing outside the container reaches"
                )
                continue
            host, port = listen
            if host not in ("0.0.0.0", "::", ""):
                problems.append(
                    f"service {name!r}: SHOP_LISTEN={listen_value} is reachable only inside the "
                    f"container; listen on 0.0.0.0"
                )
            if port not in exposed:
                problems.append(
                    f"{label}: the server listens on {port} (service {name!r}), but the image "
                    f"EXPOSEs only {sorted(exposed)}"
                )
            if port not in {p.container for p in ports_of(service)}:
                problems.append(
                    f"service {name!r} listens on {port} but publishes container ports "
                    f"{sorted(p.container for p in ports_of(service))}"
                )
            check = healthcheck_text(service)
            if check and str(port) not in check:
                problems.append(
                    f"service {name!r}: the healthcheck ({check}) does not probe the listen port {port}"
                )
        for service_name, service in shop_services(project).items():
            if build_of(service) == (context, dockerfile, target) and "bash" in healthcheck_text(service):
                if re.search(r"scratch|distroless|alpine|busybox", final.base):
                    problems.append(
                        f"service {service_name!r}: the healthcheck needs bash, but the image is "
                        f"based on {final.base}"
                    )
    return problems


def check_bind_mounts(project: Project) -> list[str]:
    problems = []
    declared = set((project.compose.get("volumes") or {}).keys())
    for name, service in project.services.items():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                kind, source = volume.get("type"), str(volume.get("source") or "")
            else:
                source = str(volume).split(":", 1)[0] if ":" in str(volume) else ""
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if not source:
                continue
            if kind == "bind":
                if source.startswith(("/", "~")):
                    problems.append(
                        f"service {name!r} mounts the absolute host path {source!r}; use a path "
                        f"relative to the repository"
                    )
                elif not project.exists(source):
                    problems.append(f"service {name!r} mounts {source!r}, which does not exist")
            elif kind == "volume" and source not in declared:
                problems.append(
                    f"service {name!r} uses the volume {source!r}, which the top-level "
                    f"`volumes:` does not declare"
                )
    return problems


ALL_CHECKS = (
    check_top_level,
    check_healthchecks,
    check_depends_on,
    check_one_shot_jobs_are_adopted,
    check_host_ports,
    check_seed_ports,
    check_loopback_ports,
    check_shop_env,
    check_s3_lake,
    check_s3_credentials,
    check_commands,
    check_dockerfile,
    check_bind_mounts,
)


def main() -> int:
    project = load_project()
    print(f"subcommands from {project.subcommands_from}: {project.subcommands}")
    print(f"SHOP_* variables the app reads: {len(project.app_env)}")
    failed = 0
    for check in ALL_CHECKS:
        problems = check(project)
        failed += bool(problems)
        print(f"{'FAIL' if problems else 'ok  '} {check.__name__}")
        for problem in problems:
            print(f"     - {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
