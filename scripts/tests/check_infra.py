#!/usr/bin/env python3
"""Offline checks of the deployment files: azure.yaml, infra/**/*.bicep, the per-service Dockerfiles.

No Bicep compiler, Docker or Azure is available where this runs, so this checks what can be
checked from the text: every azd service has its own Dockerfile whose last stage is that
service's runtime (azd's remote build passes no --target) and a tagged container app; every
Bicep parameter is used and every module call matches the module's parameters and outputs;
every environment variable the Bicep or a Dockerfile sets is one the binaries read; secrets
stay secrets; Redis is Azure Managed Redis on TLS port 10000 with a clustering policy a
non-cluster client can use; invalid sizes are refused by the template; the Postgres connection
arithmetic holds for the default parameters; probes stay within Container Apps' limits and off
the placeholder image; the admin IP rules sit on an app that carries no gRPC; the managed
OpenTelemetry agent is on by default and sends traces to the monitoring module's Application
Insights, with metrics only to an OTLP destination, and every app names its service; the metrics
collector app writes the apps' metrics (deltas) to that Application Insights; images are pulled
with an AcrPull-only identity; the admin console
builds with Node 22; the outputs the RBAC script and the hooks read exist.

Prints one "ok - ..." / "not ok - ..." line per check (details on "#   " lines) for
scripts/tests/run.sh to count. Exit status 1 when any check failed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ left in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
from infra_text import BicepFile, dockerfile_stages, matching_close, parse_simple_yaml, top_level_keys  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Variables the binaries read, from the configuration contract (ARCHITECTURE.md and the
# binaries' authors). Used only for a variable the Rust source does not mention literally yet.
CONTROL_PLANE_READS = {
    "AIPROXY_DATABASE_URL", "AIPROXY_DATABASE_MAX_CONNECTIONS", "AIPROXY_REDIS_URL", "AIPROXY_GRPC_ADDR",
    "AIPROXY_ADMIN_ADDR", "AIPROXY_ADMIN_TOKEN", "AIPROXY_ENCRYPTION_KEY", "AIPROXY_EDGE_TOKEN",
    "AIPROXY_CATALOG_TOKEN", "AIPROXY_CREDENTIAL", "AIPROXY_ALLOW_INSECURE_UPSTREAMS", "AIPROXY_DATA_DIR",
    "AIPROXY_ADMIN_WEB_DIR", "RUST_LOG",
    # Azure's own variables, read by the credential chain (often inside azure_identity).
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
}
EDGE_READS = {
    "AIPROXY_CONTROL_PLANE_URL", "AIPROXY_LISTEN_ADDR", "AIPROXY_REGION", "AIPROXY_EDGE_STATE_DIR",
    "AIPROXY_EDGE_TOKEN", "AIPROXY_EDGE_ID", "RUST_LOG",
}
# Standard OpenTelemetry variables that the OpenTelemetry SDK crates (opentelemetry_sdk,
# opentelemetry-otlp) read inside the shared telemetry crate, so no file of ours names them:
# the exporter's headers, the sampler and the batch span processor (the tracer provider in
# telemetry/src/lib.rs leaves them to the SDK; docs/observability.md lists them). The others
# (OTEL_EXPORTER_OTLP_ENDPOINT, _PROTOCOL, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
# OTEL_SDK_DISABLED, ...) must be found in telemetry/src itself (settings.rs reads them).
OTEL_SDK_READS = {
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
}

FALLBACK_READS = {
    "control-plane": CONTROL_PLANE_READS | OTEL_SDK_READS,
    "edge": EDGE_READS | OTEL_SDK_READS,
}
# Where each binary's reads are: its own crate and the telemetry crate both binaries link
# (aiproxy-telemetry), which reads the OTEL_* settings for them.
SOURCE_DIRS = {"control-plane": ["control-plane/src", "telemetry/src"], "edge": ["edge/src", "telemetry/src"]}

# The binary (its key above, and its file name in the image) each azd service runs.
SERVICE_BINARIES = {"control-plane": "control-plane", "admin": "control-plane", "edge": "edge"}
BINARY_FILES = {"control-plane": "aiproxy-control-plane", "edge": "aiproxy-edge"}

# Which binary each environment-variable block of infra/modules/region.bicep feeds.
ENV_BLOCKS = {
    "controlPlaneEnv": ["control-plane"],
    "grpcListenerEnv": ["control-plane"],
    "adminListenerEnv": ["control-plane"],
    "edgeEnv": ["edge"],
    "controlPlaneServiceEnv": ["control-plane"],
    "adminServiceEnv": ["control-plane"],
    "edgeServiceEnv": ["edge"],
    "telemetryEnv": ["control-plane", "edge"],
}

SECRET_ENV = {
    "AIPROXY_DATABASE_URL", "AIPROXY_REDIS_URL", "AIPROXY_ADMIN_TOKEN", "AIPROXY_EDGE_TOKEN",
    "AIPROXY_CATALOG_TOKEN", "AIPROXY_ENCRYPTION_KEY", "OTEL_EXPORTER_OTLP_HEADERS",
}
GENERATED_SECRETS = ["adminToken", "edgeToken", "catalogToken", "encryptionKeySeed", "postgresAdminPassword"]
ROLE_IDS = {
    "roleOpenAiUser": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "roleAzureAiUser": "53ca6127-db72-4e31-b599-04dc5da150b4",
    "roleSearchIndexDataReader": "1407120a-92aa-4202-b7e9-c0e197c71c8f",
}
ROLE_ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"

# The module of the per-region metrics collector (an OpenTelemetry Collector, not one of our
# binaries) and the only variables its container gets: its configuration and the Application
# Insights connection string its azuremonitor exporter reads.
METRICS_COLLECTOR_MODULE = "metrics-collector.bicep"
METRICS_COLLECTOR_ENV = {"OTELCOL_CONFIG", "APPLICATIONINSIGHTS_CONNECTION_STRING"}

# Node major version the admin console builds with.
NODE_MAJOR = "22"

# Azure Database for PostgreSQL Flexible Server: default max_connections per compute size minus
# the 15 Azure reserves ("max user connections"), from learn.microsoft.com/azure/postgresql/
# flexible-server/concepts-limits; and the tier each size belongs to.
POSTGRES_USER_CONNECTIONS = {
    "Standard_B1ms": 35, "Standard_B2s": 414, "Standard_B2ms": 844, "Standard_B4ms": 1703, "Standard_B8ms": 3422,
    "Standard_D2ds_v5": 844, "Standard_D4ds_v5": 1703, "Standard_D8ds_v5": 3422, "Standard_D16ds_v5": 4985,
    "Standard_E2ds_v5": 1703, "Standard_E4ds_v5": 3422,
}
POSTGRES_TIER_BY_PREFIX = {"Standard_B": "Burstable", "Standard_D": "GeneralPurpose", "Standard_E": "MemoryOptimized"}
# Premium SSD sizes Flexible Server offers, in GiB (32 GiB to 32 TiB).
POSTGRES_STORAGE_GB = {32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768}
# A rollout (activeRevisionsMode Single) briefly runs old and new replicas side by side: the
# default sizes must leave room for twice the steady-state connections.
ROLLOUT_HEADROOM = 2

# Azure Managed Redis SKU names (Microsoft.Cache/redisEnterprise); the old C/P families are retiring.
AMR_SKU = re.compile(r"(Balanced_B|MemoryOptimized_M|ComputeOptimized_X|FlashOptimized_A)\d+")
AMR_PORT = "10000"

# Container Apps probe limits (ARM spec for Microsoft.App/containerApps probes).
PROBE_LIMITS = {"failureThreshold": (1, 10), "successThreshold": (1, 10), "periodSeconds": (1, 240),
                "timeoutSeconds": (1, 240), "initialDelaySeconds": (0, 60)}

# Outputs azd writes to the environment that scripts/setup-managed-identity-rbac.sh (no
# arguments) and infra/hooks/next-step.sh read.
REQUIRED_OUTPUTS = ["AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AIPROXY_IDENTITY_NAME",
                    "AIPROXY_IDENTITY_PRINCIPAL_ID", "AIPROXY_ADMIN_URL", "AIPROXY_ADMIN_APP_NAME"]


# --------------------------------------------------------------------------- reporting

class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, description: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"not ok - {description}")
            for problem in problems:
                print(f"#   {problem}")
        else:
            self.passed += 1
            print(f"ok - {description}")

    @staticmethod
    def note(text: str) -> None:
        print(f"# {text}")


# --------------------------------------------------------------------------- checks

def source_mentions(binary: str, variable: str) -> str | None:
    """The source directory of `binary` whose Rust files name `variable`, else None."""
    pattern = re.compile(rf"(?<![A-Z0-9_]){re.escape(variable)}(?![A-Z0-9_])")
    for rel in SOURCE_DIRS[binary]:
        src = REPO / rel
        if not src.is_dir():
            continue
        for path in src.rglob("*.rs"):
            try:
                if pattern.search(path.read_text(errors="replace")):
                    return rel
            except OSError:
                continue
    return None


def check_env_reads(settings: list[tuple[str, str, str]], report: Report, label: str) -> None:
    """settings: (variable, binary, where). Each must be read by that binary."""
    problems, how = [], []
    for variable, binary, where in sorted(set(settings)):
        found = source_mentions(binary, variable)
        if found:
            how.append(f"{variable} ({binary}, {where}): found in {found}")
        elif variable in FALLBACK_READS[binary]:
            why = "read by the OpenTelemetry SDK (OTEL_SDK_READS)" if variable in OTEL_SDK_READS else "documented list; not in the source yet"
            how.append(f"{variable} ({binary}, {where}): {why}")
        else:
            problems.append(f"{where} sets {variable} for the {binary}, which neither {' nor '.join(SOURCE_DIRS[binary])} nor the documented list reads")
    for line in how:
        Report.note(line)
    report.check(label, problems)


def bicep_env_settings(region: BicepFile) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(variable, binary, where) for every variable region.bicep sets, and the blocks it lacks."""
    settings, problems = [], []
    for block, binaries in ENV_BLOCKS.items():
        span = region.var_array(block)
        if span is None:
            problems.append(f"{region.path.name}: no `var {block}` block")
            continue
        for variable in region.env_names_in(*span):
            for binary in binaries:
                settings.append((variable, binary, f"{region.path.name} {block}"))
    return settings, problems


def stray_env_names(files: list[BicepFile], region: BicepFile, root: Path) -> list[str]:
    """Upper-case `name: '...'` entries outside the known env blocks: variables set behind the checker's back."""
    spans = [region.var_array(b) for b in ENV_BLOCKS]
    problems = []
    for f in files:
        if f.path.name == METRICS_COLLECTOR_MODULE:  # runs no binary of ours: check_metrics_collector
            continue
        for m in re.finditer(r"\bname:[ \t]*'([A-Z][A-Z0-9_]*)'", f.code):
            if f is region and any(s and s[0] <= m.start() < s[1] for s in spans):
                continue
            problems.append(f"{f.path.relative_to(root)} sets {m.group(1)} outside {', '.join(ENV_BLOCKS)}")
    return problems


class Deployment:
    """The deployment files of one checkout, loaded once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.infra = root / "infra"
        self.azure_yaml = parse_simple_yaml((root / "azure.yaml").read_text())
        self.services = self.azure_yaml.get("services", {})
        # Each service's Dockerfile, as azd resolves it (project + docker.path), and its stages.
        self.dockerfiles: dict[str, Path] = {}
        self.stages: dict[str, dict[str, dict]] = {}
        for name, svc in self.services.items():
            path = (root / svc.get("project", ".") / svc.get("docker", {}).get("path", "Dockerfile")).resolve()
            self.dockerfiles[name] = path
            self.stages[name] = dockerfile_stages(path.read_text()) if path.is_file() else {}
        self.bicep_files = [BicepFile(p) for p in sorted(self.infra.rglob("*.bicep"))]
        self.by_path = {f.path: f for f in self.bicep_files}
        self.main = self.by_path[self.infra / "main.bicep"]
        self.region = self.by_path[self.infra / "modules" / "region.bicep"]
        self.parameters_json = json.loads((self.infra / "main.parameters.json").read_text())["parameters"]
        self.env_settings, self.env_block_problems = bicep_env_settings(self.region)

    def optimised_profiles(self) -> set[str]:
        """Cargo's optimised profiles: release, bench, and those of Cargo.toml inheriting one."""
        import tomllib

        cargo = self.root / "Cargo.toml"
        profiles = tomllib.loads(cargo.read_text()).get("profile", {}) if cargo.is_file() else {}
        optimised = {"release", "bench"}
        while True:
            more = {name for name, p in profiles.items() if p.get("inherits") in optimised} - optimised
            if not more:
                return optimised
            optimised |= more

    def final_stage(self, service: str) -> tuple[str, dict]:
        """The stage a build without --target produces (azd's remote build): the last one."""
        stages = self.stages.get(service, {})
        if not stages:
            return "", {}
        name = list(stages)[-1]
        return name, stages[name]

    def stage_chain(self, service: str) -> list[dict]:
        """The final stage and the stages it is built FROM, nearest first."""
        stages, chain, seen = self.stages.get(service, {}), [], set()
        name = self.final_stage(service)[0]
        while name in stages and name not in seen:
            seen.add(name)
            chain.append(stages[name])
            name = stages[name]["from"].lower()
        return chain

    def rel(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)


def param_default(f: BicepFile, name: str) -> str | None:
    m = re.search(rf"^[ \t]*param[ \t]+{name}[ \t]+\w+[ \t]*=[ \t]*([^\n]+)$", f.code, re.M)
    return m.group(1).strip() if m else None


def allowed_values(f: BicepFile, name: str) -> list[str] | None:
    """The @allowed([...]) list decorating `param name`, however it is laid out; None without one."""
    m = re.search(rf"@allowed\(\s*\[([^\]]*)\]\s*\)\s*(?:@[^\n]*\n\s*)*param[ \t]+{name}\b", f.code)
    if not m:
        return None
    return [v.strip().strip("'") for v in re.split(r"[,\n]", m.group(1)) if v.strip()]


def var_expression(f: BicepFile, name: str) -> str:
    span = f.var_array(name)
    return f.code[span[0]:span[1]] if span else ""


def container_apps(f: BicepFile) -> dict[str, str]:
    """Container app resources of a file: symbolic name -> body text (comments blanked)."""
    return {name: f.code[open_index:close + 1]
            for name, (rtype, open_index, close) in f.blocks("resource").items()
            if rtype.startswith("Microsoft.App/containerApps@")}


def object_body(text: str, key: str) -> str:
    """The `{...}` or `[...]` value of the first `key:` in text ('' when absent)."""
    m = re.search(rf"\b{key}[ \t]*:[ \t]*([\[{{])", text)
    if not m:
        return ""
    return text[m.start(1):matching_close(text, m.start(1)) + 1]


def check_services(d: Deployment, report: Report) -> None:
    problems = [] if d.services else ["azure.yaml has no services"]
    for name, svc in d.services.items():
        docker = svc.get("docker", {})
        if svc.get("host") != "containerapp":
            problems.append(f"service {name}: host is {svc.get('host')!r}, expected containerapp")
        if name not in SERVICE_BINARIES:
            problems.append(f"service {name}: this checker does not know which binary it runs (SERVICE_BINARIES)")
        if not d.dockerfiles[name].is_file():
            problems.append(f"service {name}: {d.rel(d.dockerfiles[name])} does not exist")
        if "target" in docker:
            problems.append(f"service {name}: docker.target '{docker['target']}' is ignored by azd's remote build; "
                            "give the service its own Dockerfile whose last stage is its image")
        tag = f"'azd-service-name': '{name}'"
        if not any(tag in f.code for f in d.bicep_files):
            problems.append(f"service {name}: no container app in infra/ is tagged {tag}, so azd cannot find where to deploy it")
    report.check("every azure.yaml service has its own Dockerfile (no docker.target) and a tagged container app", problems)

    problems = []
    infra_cfg = d.azure_yaml.get("infra", {})
    module_file = d.root / infra_cfg.get("path", "infra") / f"{infra_cfg.get('module', 'main')}.bicep"
    if not module_file.is_file():
        problems.append(f"azure.yaml infra points at {module_file}, which does not exist")
    for hook, cfg in d.azure_yaml.get("hooks", {}).items():
        script = d.root / cfg.get("run", "")
        if not script.is_file():
            problems.append(f"hook {hook}: {script} does not exist")
        elif not os.access(script, os.X_OK):
            problems.append(f"hook {hook}: {script} is not executable")
    report.check("azure.yaml's infra module and hook scripts exist", problems)


def check_stage_per_service(d: Deployment, report: Report) -> None:
    problems = []
    for name in d.services:
        binary = SERVICE_BINARIES.get(name)
        stage_name, final = d.final_stage(name)
        if not final or binary is None:
            problems.append(f"service {name}: no stages in {d.rel(d.dockerfiles[name])}")
            continue
        wanted = BINARY_FILES[binary]
        entrypoint = final.get("entrypoint") or ""
        if wanted not in entrypoint:
            problems.append(f"service {name}: the last stage of {d.rel(d.dockerfiles[name])} ('{stage_name}') runs "
                            f"{entrypoint or 'no ENTRYPOINT'}, not {wanted}; a remote build would ship that")
        builds = " ".join(line for st in d.stages[name].values() for line in st["lines"] if "cargo build" in line)
        crates = set(re.findall(r"-p[ \t]+(aiproxy-[\w-]+)", builds))
        if crates != {wanted}:
            problems.append(f"service {name}: {d.rel(d.dockerfiles[name])} builds {sorted(crates) or 'nothing'}, expected only {wanted}")
    report.check("each service's Dockerfile ends in that service's runtime stage and builds only its binary", problems)


def check_parameters(d: Deployment, report: Report) -> None:
    problems = []
    for f in d.bicep_files:
        for name in f.unused_params():
            problems.append(f"{f.path.relative_to(d.root)}: param {name} is never used")
    report.check("every Bicep parameter is used", problems)

    problems = [f"{f.path.relative_to(d.root)}: var {name} is never used" for f in d.bicep_files for name in f.unused_vars()]
    report.check("every Bicep variable is used", problems)


def check_modules(d: Deployment, report: Report) -> None:
    problems = []
    for f in d.bicep_files:
        for mod, (target, open_index, close) in f.blocks("module").items():
            mod_path = (f.path.parent / target).resolve()
            if mod_path not in d.by_path:
                problems.append(f"{f.path.name}: module {mod} points at {target}, which does not exist")
                continue
            callee = d.by_path[mod_path]
            body = f.masked[open_index:close + 1]
            pm = re.search(r"\bparams[ \t]*:[ \t]*\{", body)
            passed = top_level_keys(f.masked, open_index + pm.end() - 1) if pm else []
            for key in passed:
                if key not in callee.params:
                    problems.append(f"{f.path.name}: module {mod} passes {key}, which {target} does not declare")
            for name, info in callee.params.items():
                if not info["has_default"] and name not in passed:
                    problems.append(f"{f.path.name}: module {mod} does not pass required param {name} of {target}")
        modules = {m: (f.path.parent / t).resolve() for m, (t, _, _) in f.blocks("module").items()}
        for m in re.finditer(r"\b(\w+)(?:\[[^\]]*\])?!?\.outputs\.(\w+)", f.masked):
            callee = d.by_path.get(modules.get(m.group(1)))
            if callee is None:
                problems.append(f"{f.path.name}: {m.group(0)} refers to an unknown module")
            elif m.group(2) not in callee.outputs:
                problems.append(f"{f.path.name}: {m.group(0)}: {callee.path.name} has no output {m.group(2)}")
    report.check("every module call passes exactly the module's parameters and reads outputs it has", problems)


def check_parameters_file(d: Deployment, report: Report) -> None:
    problems = []
    for key in d.parameters_json:
        if key not in d.main.params:
            problems.append(f"main.parameters.json sets {key}, which main.bicep does not declare")
    for name, info in d.main.params.items():
        generated = "type: 'generate'" in info["decorators"]
        if not info["has_default"] and not generated and name not in d.parameters_json:
            problems.append(f"main.bicep param {name} has no default, no azd generate metadata and no value in main.parameters.json: azd would prompt for it")
    for name in d.services:
        variable = f"SERVICE_{name.upper().replace('-', '_')}_IMAGE_NAME"
        if not any(variable in str(entry.get("value", "")) for entry in d.parameters_json.values()):
            problems.append(f"main.parameters.json does not pass {variable} (service {name}) to the templates")
    report.check("main.parameters.json matches main.bicep (no parameter azd would have to ask for; every service's image)", problems)


def check_env(d: Deployment, report: Report) -> None:
    problems = d.env_block_problems + stray_env_names(d.bicep_files, d.region, d.root)
    report.check("environment variables are set only in the checked blocks of region.bicep", problems)
    check_env_reads(d.env_settings, report, "every environment variable the Bicep sets is one the binaries read")

    docker_settings = []
    for name in d.services:
        binary = SERVICE_BINARIES.get(name)
        if binary is None:
            continue
        for stage in d.stage_chain(name):
            for variable in stage["env"]:
                docker_settings.append((variable, binary, f"{d.rel(d.dockerfiles[name])}"))
    check_env_reads(docker_settings, report, "every environment variable the Dockerfiles set is one the binaries read")


def check_identity(d: Deployment, report: Report) -> None:
    settings = d.env_settings
    problems: list[str] = []
    apps = container_apps(d.region)
    edge_vars = {v for v, b, _ in settings if b == "edge"}
    azure_on_edge = sorted(v for v in edge_vars if v.startswith(("AZURE_", "IDENTITY_")))
    if azure_on_edge:
        problems.append(f"the edge gets Azure variables: {', '.join(azure_on_edge)}")
    for name, body in apps.items():
        identities = object_body(body, "userAssignedIdentities")
        carries_proxy = re.search(r"\bidentity\.id\b", identities) is not None
        if name == "edge" and carries_proxy:
            problems.append("the edge container app carries the proxy's identity; edges may hold the pull identity only")
        if name != "edge":
            if not re.search(r"type:[ \t]*'UserAssigned'", object_body(body, "identity")):
                problems.append(f"container app {name}: identity type is not 'UserAssigned'")
            if not carries_proxy:
                problems.append(f"container app {name} runs the control plane without the proxy's identity")
    if "edge" not in apps:
        problems.append("region.bicep has no container app named edge")
    if "AZURE_CLIENT_ID" not in {v for v, b, _ in settings if b == "control-plane"}:
        problems.append("the control plane does not get AZURE_CLIENT_ID")
    for f in d.bicep_files:
        if "SystemAssigned" in f.code:
            problems.append(f"{f.path.relative_to(d.root)} mentions a SystemAssigned identity")
    report.check("the control plane and admin app have the user-assigned identity and AZURE_CLIENT_ID; edges never do", problems)


def check_registry_pull(d: Deployment, report: Report) -> None:
    problems = []
    registry = d.by_path.get(d.infra / "modules" / "registry.bicep")
    if registry is None:
        problems.append("infra/modules/registry.bicep is missing")
    else:
        if not re.search(r"adminUserEnabled:[ \t]*false", registry.code):
            problems.append("registry.bicep does not turn the registry's admin user off (adminUserEnabled: false)")
        if ROLE_ACR_PULL not in registry.code:
            problems.append(f"registry.bicep assigns no AcrPull ({ROLE_ACR_PULL}) to the pull identity")
        other_roles = set(re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", registry.code)) - {ROLE_ACR_PULL}
        if other_roles:
            problems.append(f"registry.bicep grants other roles too: {sorted(other_roles)}")
    for f in d.bicep_files:
        if "listCredentials(" in f.code:
            problems.append(f"{f.path.relative_to(d.root)} reads the registry's admin credentials (listCredentials)")
    for name, body in container_apps(d.region).items():
        registries = body if "registries:" in body else ""
        if not registries:
            problems.append(f"container app {name} configures no registry")
    entries = var_expression(d.region, "registries")
    if not re.search(r"\bidentity:[ \t]*pullIdentity\.id", entries) or re.search(r"passwordSecretRef|username", entries):
        problems.append("region.bicep's registries do not pull with the pull identity alone (identity: pullIdentity.id, no password)")
    settings = var_expression(d.region, "pullIdentitySettings")
    if not re.search(r"identity:[ \t]*pullIdentity\.id", settings) or "lifecycle: 'None'" not in settings:
        problems.append("the pull identity is not limited to image pulls (identitySettings lifecycle 'None')")
    for name, body in container_apps(d.region).items():
        if "identitySettings: pullIdentitySettings" not in body:
            problems.append(f"container app {name} does not apply pullIdentitySettings")
    report.check("images are pulled with an AcrPull-only identity the apps' code cannot use; no registry password", problems)


def check_secrets(d: Deployment, report: Report) -> None:
    problems = []
    for name in GENERATED_SECRETS:
        info = d.main.params.get(name)
        if info is None:
            problems.append(f"main.bicep has no param {name}")
            continue
        if "@secure()" not in info["decorators"]:
            problems.append(f"main.bicep param {name} is not @secure()")
        if "type: 'generate'" not in info["decorators"]:
            problems.append(f"main.bicep param {name} is not generated by azd (metadata azd.type 'generate')")
    for f in d.bicep_files:
        secure = {n for n, i in f.params.items() if "@secure()" in i["decorators"]}
        for out, m in f.outputs.items():
            expr = f.masked[m.end():f.masked.find("\n", m.end())]
            leaked = [s for s in secure if re.search(rf"\b{s}\b", expr)]
            if leaked or re.search(r"\blist\w*\(", expr):
                problems.append(f"{f.path.relative_to(d.root)}: output {out} exposes a secret ({', '.join(leaked) or 'list*()'})")
    for span_name in ENV_BLOCKS:
        span = d.region.var_array(span_name)
        if not span:
            continue
        for m in re.finditer(r"\{[^{}]*\bname:[ \t]*'([A-Z][A-Z0-9_]*)'[^{}]*\}", d.region.code[span[0]:span[1]]):
            if m.group(1) in SECRET_ENV and "secretRef" not in m.group(0):
                problems.append(f"region.bicep sets secret {m.group(1)} as a plain value instead of a secretRef")
    report.check("secrets are generated by azd, @secure(), Container App secrets, and never outputs", problems)


def check_roles(d: Deployment, report: Report) -> None:
    problems = []
    script = (d.root / "scripts" / "setup-managed-identity-rbac.sh").read_text()
    for var, guid in ROLE_IDS.items():
        if not re.search(rf"var {var} = '{guid}'", d.main.code):
            problems.append(f"main.bicep does not set {var} = '{guid}'")
        if guid not in script:
            problems.append(f"the RBAC script does not use role {guid}")
    if not re.search(r"@minValue\(2\)", d.main.params.get("controlPlaneMinReplicas", {}).get("decorators", "")):
        problems.append("main.bicep controlPlaneMinReplicas is not @minValue(2)")
    report.check("role ids match ROUTES.md in Bicep and the RBAC script; control plane has >= 2 replicas", problems)


def check_ports(d: Deployment, report: Report) -> None:
    problems = []
    ports = {name: re.search(rf"var {name} = (\d+)", d.region.code) for name in ("adminPort", "grpcPort", "edgePort")}
    ports = {k: m.group(1) for k, m in ports.items() if m}
    expected = {"control-plane": [("AIPROXY_ADMIN_ADDR", "adminPort"), ("AIPROXY_GRPC_ADDR", "grpcPort")],
                "edge": [("AIPROXY_LISTEN_ADDR", "edgePort")]}
    for service, binary in SERVICE_BINARIES.items():
        if service not in d.services:
            continue
        final = d.final_stage(service)[1]
        env = {k: v for st in reversed(d.stage_chain(service)) for k, v in st["env"].items()}
        for variable, port_name in expected[binary]:
            if env.get(variable) != f"0.0.0.0:{ports.get(port_name)}":
                problems.append(f"{d.rel(d.dockerfiles[service])}: {variable}={env.get(variable)} but region.bicep listens on 0.0.0.0:{ports.get(port_name)}")
            if ports.get(port_name) not in final.get("expose", []):
                problems.append(f"{d.rel(d.dockerfiles[service])} does not EXPOSE {ports.get(port_name)} ({port_name})")
    report.check("ports agree between the Dockerfiles and the Bicep", problems)


def check_dockerfile(d: Deployment, report: Report) -> None:
    problems = []
    for service, binary in SERVICE_BINARIES.items():
        if service not in d.services:
            continue
        where = d.rel(d.dockerfiles[service])
        chain = d.stage_chain(service)
        if not chain:
            problems.append(f"{where} has no stages")
            continue
        base = chain[-1]["from"].lower()
        if base != "debian:bookworm-slim":
            problems.append(f"{where}: the image runs on {base}, expected debian:bookworm-slim")
        user = next((st["user"] for st in chain if st["user"]), None)
        if not user or user.split(":")[0] in ("0", "root"):
            problems.append(f"{where}: the image runs as {user or 'root (no USER)'}")
        lines = " ".join(line for st in chain for line in st["lines"])
        if "ca-certificates" not in lines:
            problems.append(f"{where}: the runtime does not install ca-certificates")
        builds = " ".join(line for st in d.stages[service].values() for line in st["lines"])
        # An optimised build: --release, or --profile with a profile that inherits it (the edge's
        # `dist`): `--profile dev` is no release build.
        build = re.search(r"cargo build (--release|--profile (\S+)) --locked -p aiproxy-", builds)
        if not build:
            problems.append(f"{where}: no cargo build --release (or --profile) --locked")
        elif build.group(2) and build.group(2) not in d.optimised_profiles():
            problems.append(f"{where}: cargo build --profile {build.group(2)}: not a profile that inherits release")
        if binary == "control-plane":
            env = {k: v for st in reversed(chain) for k, v in st["env"].items()}
            if not re.search(r"COPY --from=admin-web \S*admin-web/dist /app/admin-web/dist", lines):
                problems.append(f"{where}: the image does not copy admin-web/dist to /app/admin-web/dist")
            if env.get("AIPROXY_ADMIN_WEB_DIR") != "/app/admin-web/dist":
                problems.append(f"{where}: AIPROXY_ADMIN_WEB_DIR is not /app/admin-web/dist")
    report.check("Dockerfiles: non-root images on debian:bookworm-slim, CA roots, the admin console in the control plane", problems)

    problems = []
    for service in d.services:
        if SERVICE_BINARIES.get(service) != "control-plane":
            continue
        node = [st["from"] for st in d.stages[service].values() if st["from"].lower().startswith("node:")]
        if not node:
            problems.append(f"{d.rel(d.dockerfiles[service])} has no node stage for the admin console")
        for image in node:
            tag = image.split(":", 1)[1]
            if tag.split("-")[0].split(".")[0] != NODE_MAJOR:
                problems.append(f"{d.rel(d.dockerfiles[service])} builds the admin console on {image}, expected Node {NODE_MAJOR}")
    report.check(f"the admin console builds with Node {NODE_MAJOR}", problems)

    # Inputs the image build needs that other work provides; not failures of these files.
    for needed in ("Cargo.lock", "admin-web/package.json", "admin-web/package-lock.json"):
        if not (d.root / needed).exists():
            Report.note(f"{needed} is not in the tree yet; `docker build` needs it (COPY/--locked)")


def check_redis(d: Deployment, report: Report) -> None:
    problems = []
    for f in d.bicep_files:
        if re.search(r"'Microsoft\.Cache/redis@", f.code):
            problems.append(f"{f.path.relative_to(d.root)} uses Azure Cache for Redis (Microsoft.Cache/redis), which is retiring")
    redis = d.by_path.get(d.infra / "modules" / "redis.bicep")
    resources = redis.blocks("resource") if redis else {}
    cluster = [n for n, (t, _, _) in resources.items() if t.startswith("Microsoft.Cache/redisEnterprise@")]
    database = [(n, redis.code[o:c + 1]) for n, (t, o, c) in resources.items() if t.startswith("Microsoft.Cache/redisEnterprise/databases@")]
    if not cluster or not database:
        problems.append("infra/modules/redis.bicep does not create a Microsoft.Cache/redisEnterprise cluster and its database")
    for name, body in database:
        for key, value in (("name", "'default'"), ("port", AMR_PORT), ("clientProtocol", "'Encrypted'"),
                           ("clusteringPolicy", "'EnterpriseCluster'"), ("accessKeysAuthentication", "'Enabled'")):
            if not re.search(rf"\b{key}:[ \t]*{re.escape(value)}", body):
                problems.append(f"redis.bicep database {name}: {key} is not {value}")
    secrets = var_expression(d.region, "controlPlaneSecrets")
    url = re.search(r"name:[ \t]*'redis-url'[^}]*value:[ \t]*'([^\n]*)'", secrets)
    if not url:
        problems.append("region.bicep has no redis-url secret in controlPlaneSecrets")
    else:
        value = url.group(1)
        if not value.startswith("rediss://:"):
            problems.append(f"the redis-url secret is not rediss://:<key>@host:port (TLS): {value}")
        if not re.search(r"listKeys\(\)\.primaryKey", value) or "redisDatabase." not in value:
            problems.append("the redis-url secret does not take the database's access key (redisDatabase.listKeys())")
        if not value.endswith(":${redisDatabase.properties.port}") and not value.endswith(f":{AMR_PORT}"):
            problems.append(f"the redis-url secret does not use the database's TLS port {AMR_PORT}")
    report.check(f"Redis is Azure Managed Redis: one 'default' database, TLS on {AMR_PORT}, EnterpriseCluster, rediss:// URL", problems)


def check_redis_sku(d: Deployment, report: Report) -> None:
    problems = []
    allowed = allowed_values(d.main, "redisSku")
    default = (param_default(d.main, "redisSku") or "").strip("'")
    if allowed is None:
        problems.append("main.bicep param redisSku has no @allowed list: an invalid size would reach ARM")
    else:
        bad = [v for v in allowed if not AMR_SKU.fullmatch(v)]
        if bad:
            problems.append(f"redisSku allows sizes that are not Azure Managed Redis SKUs: {bad}")
        if default not in allowed:
            problems.append(f"redisSku's default {default!r} is not in its allowed list")
    capacity = [n for n in d.main.params if "capacity" in n.lower()]
    redis = d.by_path.get(d.infra / "modules" / "redis.bicep")
    if capacity or (redis and re.search(r"\bcapacity:", redis.code)):
        problems.append(f"a Redis capacity is set apart from the SKU ({', '.join(capacity) or 'redis.bicep capacity:'}): a SKU/capacity pair can be invalid")
    report.check("Redis: one SKU parameter limited to Azure Managed Redis sizes, no SKU/capacity pair to get wrong", problems)


def postgres_sku_table(d: Deployment) -> dict[str, tuple[str, int]]:
    """The postgresSkus map in main.bicep: SKU -> (tier, user connections)."""
    table = {}
    for m in re.finditer(r"(Standard_\w+):[ \t]*\{[ \t]*tier:[ \t]*'(\w+)',?[ \t]*userConnections:[ \t]*(\d+)[ \t]*\}",
                         var_expression(d.main, "postgresSkus")):
        table[m.group(1)] = (m.group(2), int(m.group(3)))
    return table


def check_postgres_sizes(d: Deployment, report: Report) -> None:
    problems = []
    table = postgres_sku_table(d)
    allowed = allowed_values(d.main, "postgresSkuName")
    if allowed is None:
        problems.append("main.bicep param postgresSkuName has no @allowed list")
        allowed = []
    for sku in allowed:
        tier = next((t for p, t in POSTGRES_TIER_BY_PREFIX.items() if sku.startswith(p)), None)
        if sku not in POSTGRES_USER_CONNECTIONS:
            problems.append(f"postgresSkuName allows {sku}, whose connection limit this checker does not know")
        elif table.get(sku) != (tier, POSTGRES_USER_CONNECTIONS[sku]):
            problems.append(f"main.bicep postgresSkus[{sku}] is {table.get(sku)}, Azure's is ({tier}, {POSTGRES_USER_CONNECTIONS[sku]})")
    if "tier" in d.main.params or "postgresTier" in d.main.params:
        problems.append("main.bicep takes the Postgres tier as a parameter: it must follow from the SKU")
    storage = allowed_values(d.main, "postgresStorageGb")
    if storage is None:
        problems.append("main.bicep param postgresStorageGb has no @allowed list")
    else:
        bad = [v for v in storage if not v.isdigit() or int(v) not in POSTGRES_STORAGE_GB]
        if bad:
            problems.append(f"postgresStorageGb allows sizes Flexible Server does not offer: {bad}")
        if (param_default(d.main, "postgresStorageGb") or "") not in storage:
            problems.append("postgresStorageGb's default is not in its allowed list")
    ha = var_expression(d.main, "checkedPostgresHighAvailability")
    if not (re.search(r"postgresHighAvailability[ \t]*&&[ \t]*postgresTier[ \t]*==[ \t]*'Burstable'", ha) and "fail(" in ha):
        problems.append("main.bicep does not refuse postgresHighAvailability on Burstable with fail() (var checkedPostgresHighAvailability)")
    if not re.search(r"highAvailability:[ \t]*checkedPostgresHighAvailability\b", d.main.code):
        problems.append("the postgres module does not get the checked high-availability value")
    report.check("Postgres: SKU, tier, storage and high availability limited to what Azure accepts (HA on Burstable refused)", problems)


def check_connections(d: Deployment, report: Report) -> None:
    problems = []
    table = postgres_sku_table(d)

    def default_int(name: str) -> int:
        value = param_default(d.main, name)
        if value is None or not value.isdigit():
            problems.append(f"main.bicep param {name} has no integer default")
            return 0
        return int(value)

    pool = default_int("databaseMaxConnections")
    cp_max = max(default_int("controlPlaneMaxReplicas"), default_int("controlPlaneMinReplicas"))
    admin_max = max(default_int("adminMaxReplicas"), default_int("adminMinReplicas"))
    regions_default = (param_default(d.main, "regions") or "''").strip("'")
    regions = max(1, len([r for r in regions_default.split(",") if r.strip()]))
    sku = (param_default(d.main, "postgresSkuName") or "").strip("'")
    limit = POSTGRES_USER_CONNECTIONS.get(sku, 0)
    replicas = regions * cp_max + admin_max
    needed = replicas * (pool + 1)
    Report.note(f"default: ({regions} region(s) x {cp_max} control-plane + {admin_max} admin) = {replicas} replicas "
                f"x ({pool} pool + 1 LISTEN) = {needed} connections; x{ROLLOUT_HEADROOM} during a rollout = "
                f"{needed * ROLLOUT_HEADROOM}; {sku} allows {limit}")
    if needed * ROLLOUT_HEADROOM > limit:
        problems.append(f"the default {sku} allows {limit} user connections; the default replicas need {needed} "
                        f"({needed * ROLLOUT_HEADROOM} while a rollout overlaps old and new revisions)")
    if table.get(sku, (None, None))[1] != limit:
        problems.append(f"main.bicep's postgresSkus does not give the default {sku} Azure's limit {limit}")
    expected = re.sub(r"\s+", "", "length(regionList) * max(controlPlaneMaxReplicas, controlPlaneMinReplicas) + max(adminMaxReplicas, adminMinReplicas)")
    if re.sub(r"\s+", "", var_expression(d.main, "controlPlaneReplicasAtMost")) != expected:
        problems.append(f"main.bicep controlPlaneReplicasAtMost is not {expected}")
    if re.sub(r"\s+", "", var_expression(d.main, "postgresConnectionsNeeded")) != "controlPlaneReplicasAtMost*(databaseMaxConnections+1)":
        problems.append("main.bicep postgresConnectionsNeeded is not controlPlaneReplicasAtMost * (databaseMaxConnections + 1)")
    check = var_expression(d.main, "checkedDatabaseMaxConnections")
    if not (re.search(r"postgresConnectionsNeeded[ \t]*>[ \t]*postgresUserConnections", check) and "fail(" in check):
        problems.append("main.bicep does not refuse a pool the Postgres size cannot hold (fail() in checkedDatabaseMaxConnections)")
    if not re.search(r"databaseMaxConnections:[ \t]*checkedDatabaseMaxConnections\b", d.main.code):
        problems.append("the region modules do not get the checked pool size")
    if not re.search(r"name:[ \t]*'AIPROXY_DATABASE_MAX_CONNECTIONS',[ \t]*value:[ \t]*string\(databaseMaxConnections\)",
                     var_expression(d.region, "controlPlaneEnv")):
        problems.append("controlPlaneEnv does not set AIPROXY_DATABASE_MAX_CONNECTIONS from databaseMaxConnections")
    report.check("Postgres connections: replicas x (pool + 1) fit the default server with rollout headroom; the template refuses what does not fit", problems)


def check_probes(d: Deployment, report: Report) -> None:
    problems = []
    for f in d.bicep_files:
        for m in re.finditer(r"\b(" + "|".join(PROBE_LIMITS) + r"):[ \t]*(\d+)", f.code):
            low, high = PROBE_LIMITS[m.group(1)]
            if not low <= int(m.group(2)) <= high:
                problems.append(f"{f.path.relative_to(d.root)}: {m.group(1)} {m.group(2)} is outside Container Apps' range {low}-{high}")
    for name, body in container_apps(d.region).items():
        probes = re.findall(r"\bprobes:[ \t]*([^\n]*)", body)
        if not probes:
            problems.append(f"container app {name} defines no probes for its real image")
        for value in probes:
            m = re.fullmatch(r"empty\((\w+)\)[ \t]*\?[ \t]*\[\][ \t]*:[ \t]*\w+", value.strip())
            image = re.search(r"\bimage:[ \t]*empty\((\w+)\)", body)
            if not m or not image or m.group(1) != image.group(1):
                problems.append(f"container app {name}: probes '{value.strip()}' also apply to the placeholder image "
                                "(expected `empty(<image param>) ? [] : <probes>`)")
        # `azd deploy` changes only containers[0].image (azd's containerAppService.AddRevision), so
        # an ingress port chosen for the placeholder would stay on the real image: the real
        # image's port, always.
        target = re.search(r"\btargetPort:[ \t]*([^\n]*)", object_body(body, "ingress"))
        if not target or not re.fullmatch(r"(adminPort|edgePort)", target.group(1).strip()):
            problems.append(f"container app {name}: ingress targetPort is "
                            f"{target.group(1).strip() if target else 'missing'}, not the real image's port "
                            "(adminPort / edgePort): azd deploy swaps only the image, so the real image would "
                            "keep the placeholder's port")
    report.check("probes: thresholds within Container Apps' ranges; none on the placeholder image at first provision; "
                 "ingress on the real port", problems)


def check_admin_separation(d: Deployment, report: Report) -> None:
    problems = []
    apps = container_apps(d.region)
    restricted = [n for n, b in apps.items() if "ipSecurityRestrictions" in object_body(b, "ingress")]
    grpc_apps = [n for n, b in apps.items() if re.search(r"targetPort:[ \t]*grpcPort", object_body(b, "additionalPortMappings"))]
    if len(restricted) != 1:
        problems.append(f"expected one app with the admin IP rules, found {restricted or 'none'}")
    if len(grpc_apps) != 1:
        problems.append(f"expected one app exposing the gRPC port to the edges, found {grpc_apps or 'none'}")
    for name in set(restricted) & set(grpc_apps):
        problems.append(f"container app {name} has the admin IP rules and the edges' gRPC port: the rules would cut the edges off")
    for name in restricted:
        body = apps[name]
        if "additionalPortMappings" in body:
            problems.append(f"the admin app {name} exposes additional ports")
        if "adminListenerEnv" not in body:
            problems.append(f"the admin app {name} does not bind its gRPC listener with adminListenerEnv")
    if not re.search(r"'AIPROXY_GRPC_ADDR',[ \t]*value:[ \t]*'127\.0\.0\.1:", var_expression(d.region, "adminListenerEnv")):
        problems.append("adminListenerEnv does not bind AIPROXY_GRPC_ADDR to 127.0.0.1 (the admin app's gRPC must not be reachable)")
    for name in grpc_apps:
        body = apps[name]
        if not re.search(r"external:[ \t]*false", object_body(body, "ingress").split("additionalPortMappings")[0]):
            problems.append(f"the gRPC app {name}'s main ingress is not environment-internal (external: false)")
        if "grpcListenerEnv" not in body:
            problems.append(f"the gRPC app {name} does not listen with grpcListenerEnv")
        app_param = re.search(r"^[ \t]*name:[ \t]*(\w+)", body[1:], re.M)
        url = re.search(r"'AIPROXY_CONTROL_PLANE_URL',[ \t]*value:[ \t]*'http://\$\{(\w+)\}:", var_expression(d.region, "edgeEnv"))
        if not app_param or not url or url.group(1) != app_param.group(1):
            problems.append(f"the edges' AIPROXY_CONTROL_PLANE_URL does not point at the gRPC app {name}")
    if not re.search(r"output AIPROXY_ADMIN_URL string = 'https://\$\{regionStacks\[0\]\.outputs\.adminFqdn\}'", d.main.code):
        problems.append("AIPROXY_ADMIN_URL is not the admin app's address (regionStacks[0].outputs.adminFqdn)")
    report.check("the admin IP rules sit on their own app (admin console/API, gRPC on loopback); the edges' gRPC app has none", problems)


def value_text(text: str, key: str) -> str:
    """The value of the first `key:` in text: the rest of its line, through the matching bracket
    when the line ends opening one ('' when absent)."""
    m = re.search(rf"\b{key}[ \t]*:[ \t]*([^\n]*)", text)
    if not m:
        return ""
    line = m.group(1).rstrip()
    if line.endswith(("{", "[")):
        start = m.start(1) + len(line) - 1
        return text[m.start(1):matching_close(text, start) + 1]
    return line


def env_blocks_of(body: str) -> list[str]:
    """The env blocks a container app's `env: concat(a, b, ...)` (or `env: a`) joins."""
    m = re.search(r"\benv:[ \t]*concat\(([^)\n]*)\)", body) or re.search(r"\benv:[ \t]*(\w+)[ \t]*$", body, re.M)
    return [b.strip() for b in m.group(1).split(",")] if m else []


def check_otel_agent(d: Deployment, report: Report) -> None:
    """The managed OpenTelemetry agent: on by default, traces (and logs) to the monitoring module's
    Application Insights, metrics never to Application Insights (it takes none from the agent, per
    Azure's "Collect and read OpenTelemetry data in Azure Container Apps"), a switch to turn it
    off, and a service name on every app."""
    problems = []
    default = param_default(d.main, "enableManagedOpenTelemetry")
    if default != "true":
        problems.append(f"main.bicep enableManagedOpenTelemetry defaults to {default}, expected true (azd up yields traces)")
    monitoring = d.by_path.get(d.infra / "modules" / "monitoring.bicep")
    if monitoring is None or "appInsightsConnectionString" not in monitoring.outputs:
        problems.append("monitoring.bicep has no output appInsightsConnectionString")
    elif not re.search(r"output appInsightsConnectionString string = appInsights\.properties\.ConnectionString\b", monitoring.code):
        problems.append("monitoring.bicep's appInsightsConnectionString is not its Application Insights' ConnectionString")
    if monitoring is not None and re.search(r"DisableLocalAuth:[ \t]*true", monitoring.code):
        problems.append("monitoring.bicep disables local authentication on Application Insights; the agent sends with the connection string and needs it")
    if not re.search(r"^[ \t]*appInsightsConnectionString:[ \t]*monitoring\.outputs\.appInsightsConnectionString[ \t]*$", d.main.code, re.M):
        problems.append("main.bicep does not pass monitoring.outputs.appInsightsConnectionString to the regions")
    if not re.search(r"^[ \t]*enableManagedOpenTelemetry:[ \t]*enableManagedOpenTelemetry[ \t]*$", d.main.code, re.M):
        problems.append("main.bicep does not pass enableManagedOpenTelemetry to the regions")
    env = next((d.region.code[o:c + 1] for rtype, o, c in d.region.blocks("resource").values()
                if rtype.startswith("Microsoft.App/managedEnvironments@")), "")
    if not env:
        problems.append("region.bicep has no Microsoft.App/managedEnvironments resource")
    ai = re.search(r"\bappInsightsConfiguration:[ \t]*([^\n]*)", env)
    if not ai or not re.fullmatch(r"enableManagedOpenTelemetry[ \t]*\?[ \t]*\{[ \t]*connectionString:[ \t]*appInsightsConnectionString[ \t]*\}[ \t]*:[ \t]*null",
                                  ai.group(1).strip()):
        problems.append("the environment's appInsightsConfiguration is not `enableManagedOpenTelemetry ? { connectionString: appInsightsConnectionString } : null`")
    otel = re.search(r"\bopenTelemetryConfiguration:[ \t]*([^\n]*)", env)
    agent_var = re.fullmatch(r"enableManagedOpenTelemetry[ \t]*\?[ \t]*(\w+)[ \t]*:[ \t]*null", otel.group(1).strip()) if otel else None
    if not agent_var:
        problems.append("the environment's openTelemetryConfiguration is not `enableManagedOpenTelemetry ? <agent settings> : null`")
    else:
        agent = var_expression(d.region, agent_var.group(1))
        traces = object_body(agent, "tracesConfiguration")
        if "'appInsights'" not in object_body(traces, "destinations"):
            problems.append(f"the agent ({agent_var.group(1)}) does not send traces to 'appInsights'")
        metrics = value_text(agent, "metricsConfiguration")
        if "appInsights" in metrics:
            problems.append(f"the agent ({agent_var.group(1)}) sends metrics to 'appInsights', which takes no metrics from the agent")
        if "dataDog" in agent:
            problems.append(f"the agent ({agent_var.group(1)}) names a Datadog destination nothing configures")
    apps = container_apps(d.region)
    names: dict[str, str] = {}
    for app, body in apps.items():
        blocks = env_blocks_of(body)
        set_here = [(b, re.search(r"'OTEL_SERVICE_NAME',[ \t]*value:[ \t]*'([^']+)'", var_expression(d.region, b))) for b in blocks]
        set_here = [(b, m.group(1)) for b, m in set_here if m]
        if len(set_here) != 1:
            problems.append(f"container app {app} gets OTEL_SERVICE_NAME from {len(set_here)} of its env blocks ({', '.join(blocks) or 'none'}), expected exactly one")
            continue
        service = set_here[0][1]
        if service in names:
            problems.append(f"container apps {names[service]} and {app} both report service.name {service}")
        names[service] = app
        if "telemetryEnv" not in blocks:
            problems.append(f"container app {app} does not get telemetryEnv (resource attributes, an explicit OTLP endpoint)")
    if "OTEL_RESOURCE_ATTRIBUTES" not in d.region.env_names_in(*(d.region.var_array("telemetryEnv") or (0, 0))):
        problems.append("telemetryEnv does not set OTEL_RESOURCE_ATTRIBUTES (the region each replica runs in)")
    report.check("the managed OpenTelemetry agent is on by default and wired to the monitoring module's Application Insights "
                 "(its connection string, traces there, no metrics there); every app has its own OTEL_SERVICE_NAME", problems)

    problems = []
    check = var_expression(d.main, "checkedOtlpMetricsEndpoint")
    if not (re.search(r"!enableManagedOpenTelemetry[ \t]*&&[ \t]*!empty\(otlpMetricsEndpoint\)", check) and "fail(" in check):
        problems.append("main.bicep does not refuse otlpMetricsEndpoint with the agent off (fail() in checkedOtlpMetricsEndpoint)")
    if not re.search(r"^[ \t]*otlpMetricsEndpoint:[ \t]*checkedOtlpMetricsEndpoint[ \t]*$", d.main.code, re.M):
        problems.append("the regions do not get the checked otlpMetricsEndpoint")
    for name in ("otlpMetricsHeaders", "otlpHeaders"):
        if "@secure()" not in d.main.params.get(name, {}).get("decorators", ""):
            problems.append(f"main.bicep param {name} is missing or not @secure() (it carries API keys)")
    report.check("OTLP destinations: metrics to an OTLP endpoint only through the agent (refused with the agent off); "
                 "headers are secure parameters", problems)


def collector_config(module: BicepFile) -> tuple[dict, list[str]]:
    """The collector's configuration (the YAML in the multi-line string the container gets in
    OTELCOL_CONFIG), parsed; or problems."""
    m = re.search(r"'OTELCOL_CONFIG',[ \t]*value:[ \t]*(\w+)", module.code)
    if not m:
        return {}, ["its container does not get OTELCOL_CONFIG from a variable"]
    span = module.var_array(m.group(1))
    text = module.text[span[0]:span[1]] if span else ""
    body = re.search(r"'''\n(.*?)'''", text, re.S)
    if not body:
        return {}, [f"var {m.group(1)} is not a multi-line ''' string"]
    try:
        import yaml  # PyYAML (scripts/tests/run.sh installs it); only this check needs it
    except ImportError:
        return {}, ["PyYAML is not installed (apt-get install python3-yaml, or pip install pyyaml)"]
    try:
        config = yaml.safe_load(body.group(1))
    except yaml.YAMLError as error:
        return {}, [f"var {m.group(1)} is not valid YAML: {error}"]
    return (config, []) if isinstance(config, dict) else ({}, [f"var {m.group(1)} is not a YAML mapping"])


def port_of(endpoint: object) -> str:
    m = re.fullmatch(r"0\.0\.0\.0:(\d+)", str(endpoint))
    return m.group(1) if m else ""


def check_metrics_collector(d: Deployment, report: Report) -> None:
    """Application Insights takes no metrics from the managed agent, so each region runs an
    OpenTelemetry Collector that takes the apps' metrics over OTLP/gRPC and writes them to the
    monitoring module's Application Insights; on by default, and only when the metrics go nowhere
    else. The apps send deltas (Application Insights sums each export) to its internal port."""
    problems = []
    module = d.by_path.get(d.infra / "modules" / METRICS_COLLECTOR_MODULE)
    if module is None:
        report.check("the metrics collector", [f"infra/modules/{METRICS_COLLECTOR_MODULE} is missing"])
        return
    if param_default(d.main, "metricsCollector") != "true":
        problems.append("main.bicep metricsCollector does not default to true (azd up yields metrics)")
    default_image = re.search(r"var defaultMetricsCollectorImage = '([^']+)'", d.main.code)
    if not default_image or not re.fullmatch(r"[\w./-]+/opentelemetry-collector-contrib:\d+\.\d+\.\d+", default_image.group(1)):
        problems.append("main.bicep's defaultMetricsCollectorImage is not a pinned release of the contrib distribution (which has the azuremonitor exporter)")
    if not re.search(r"^[ \t]*metricsCollectorImage:[ \t]*metricsCollector[ \t]*\?", d.main.code, re.M):
        problems.append("the regions' metricsCollectorImage does not depend on metricsCollector")
    call = d.region.blocks("module").get("metricsCollector")
    if call is None or call[0] != METRICS_COLLECTOR_MODULE:
        problems.append(f"region.bicep has no `module metricsCollector '{METRICS_COLLECTOR_MODULE}'`")
    else:
        body = d.region.code[call[1]:call[2] + 1]
        if not re.search(r"^[ \t]*name:[ \t]*metricsCollectorName[ \t]*$", body, re.M):
            problems.append("the collector app is not named metricsCollectorName (the name the apps' endpoint uses)")
        if not re.search(r"^[ \t]*appInsightsConnectionString:[ \t]*appInsightsConnectionString[ \t]*$", body, re.M):
            problems.append("the collector does not get the monitoring module's appInsightsConnectionString")
        if not re.search(r"^[ \t]*environmentId:[ \t]*appsEnvironment\.id[ \t]*$", body, re.M):
            problems.append("the collector does not run in the region's Container Apps environment")
    condition = re.sub(r"\s+", "", var_expression(d.region, "deployMetricsCollector"))
    terms = set(condition.split("&&"))
    wanted = {"!empty(metricsCollectorImage)", "empty(otlpMetricsEndpoint)", "empty(otlpEndpoint)"}
    if terms != wanted:
        problems.append(f"deployMetricsCollector is {condition or 'missing'}, expected {' && '.join(sorted(wanted))}: "
                        "the collector must exist exactly when metrics would otherwise go nowhere")
    if not re.search(r"module metricsCollector '[^']+' = if \(deployMetricsCollector\)", d.region.code):
        problems.append("the collector module is not deployed under deployMetricsCollector")
    telemetry = var_expression(d.region, "telemetryEnv")
    branch = re.search(r"(?<![!\w])deployMetricsCollector\s*\?\s*\[(.*?)\]\s*:\s*\[\]", telemetry, re.S)
    sent = dict(re.findall(r"name:[ \t]*'([A-Z_]+)',[ \t]*value:[ \t]*([^}\n]+?)[ \t]*\}", branch.group(1))) if branch else {}
    if sent.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != "metricsCollectorEndpoint":
        problems.append("with the collector (and only then), telemetryEnv does not set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT to metricsCollectorEndpoint")
    endpoint = re.search(r"^var metricsCollectorEndpoint = 'http://\$\{metricsCollectorName\}:(\d+)'[ \t]*$", d.region.code, re.M)
    if sent.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") != "'grpc'":
        problems.append("with the collector, the apps' metrics protocol is not 'grpc' (its receiver takes OTLP/gRPC only)")
    if sent.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") != "'delta'":
        problems.append("with the collector, the apps do not send deltas (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE 'delta'): "
                        "Application Insights sums what each export brings, so cumulative totals would be counted again and again")

    apps = container_apps(module)
    if len(apps) != 1:
        problems.append(f"{METRICS_COLLECTOR_MODULE} should hold one container app, found {len(apps)}")
    app = next(iter(apps.values()), "")
    ingress = object_body(app, "ingress")
    if re.search(r"external:[ \t]*true", ingress):
        problems.append("the collector's ingress is reachable from outside the environment (external: true)")
    if re.search(r"^[ \t]*identity:", app.split("properties:")[0], re.M):
        problems.append("the collector carries an identity; it needs none")
    env_names = set(re.findall(r"\bname:[ \t]*'([A-Z][A-Z0-9_]*)'", app))
    if env_names != METRICS_COLLECTOR_ENV:
        problems.append(f"the collector's variables are {sorted(env_names)}, expected {sorted(METRICS_COLLECTOR_ENV)}")
    if not re.search(r"'APPLICATIONINSIGHTS_CONNECTION_STRING',[ \t]*secretRef:[ \t]*'[\w-]+'", app):
        problems.append("the collector's APPLICATIONINSIGHTS_CONNECTION_STRING is not a secretRef")
    if "'--config=env:OTELCOL_CONFIG'" not in app:
        problems.append("the collector is not started with --config=env:OTELCOL_CONFIG")
    if not re.search(r"\bimage:[ \t]*image[ \t]*$", app, re.M):
        problems.append("the collector's image is not the image parameter")

    config, config_problems = collector_config(module)
    problems += [f"{METRICS_COLLECTOR_MODULE}: {p}" for p in config_problems]
    if config:
        ports = {}
        for name in ("otlpGrpcPort", "healthPort"):
            m = re.search(rf"var {name} = (\d+)", module.code)
            ports[name] = m.group(1) if m else ""
        grpc = ((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}
        if set(grpc) != {"grpc"} or port_of((grpc.get("grpc") or {}).get("endpoint")) != ports["otlpGrpcPort"]:
            problems.append(f"the collector's otlp receiver does not take gRPC alone on 0.0.0.0:{ports['otlpGrpcPort']} (otlpGrpcPort)")
        mapping = object_body(ingress, "additionalPortMappings")
        if (not re.search(r"targetPort:[ \t]*otlpGrpcPort\b", mapping) or not re.search(r"exposedPort:[ \t]*otlpGrpcPort\b", mapping)
                or re.search(r"external:[ \t]*true", mapping)):
            problems.append("the collector's otlpGrpcPort is not an internal additional port of its ingress (target and exposed)")
        if not endpoint or endpoint.group(1) != ports["otlpGrpcPort"]:
            problems.append(f"region.bicep's metricsCollectorEndpoint is not 'http://${{metricsCollectorName}}:{ports['otlpGrpcPort']}' (the collector's otlpGrpcPort)")
        health = ((config.get("extensions") or {}).get("health_check") or {}).get("endpoint")
        if port_of(health) != ports["healthPort"]:
            problems.append(f"the collector's health_check extension does not listen on 0.0.0.0:{ports['healthPort']} (healthPort)")
        if not re.search(r"targetPort:[ \t]*healthPort\b", ingress.split("additionalPortMappings")[0]):
            problems.append("the collector's main ingress is not its health port")
        probes = object_body(app, "probes")
        gets = re.findall(r"httpGet:[ \t]*\{([^}]*)\}", probes)
        asks_health = [g for g in gets if re.search(r"path:[ \t]*'/'", g) and re.search(r"port:[ \t]*healthPort\b", g)]
        if not gets or len(asks_health) != len(gets) or len(gets) != probes.count("type:"):
            problems.append("the collector's probes are not all HTTP GETs of its health_check extension ('/' on healthPort)")
        exporter = (config.get("exporters") or {}).get("azuremonitor")
        if not isinstance(exporter, dict) or exporter.get("connection_string") != "${env:APPLICATIONINSIGHTS_CONNECTION_STRING}":
            problems.append("the azuremonitor exporter does not take its connection string from APPLICATIONINSIGHTS_CONNECTION_STRING")
        service = config.get("service") or {}
        pipelines = service.get("pipelines") or {}
        if set(pipelines) != {"metrics"}:
            problems.append(f"the collector's pipelines are {sorted(pipelines)}, expected metrics alone (traces and logs go through the agent)")
        metrics = pipelines.get("metrics") or {}
        if metrics.get("receivers") != ["otlp"] or metrics.get("exporters") != ["azuremonitor"]:
            problems.append("the metrics pipeline does not run from the otlp receiver to the azuremonitor exporter")
        used, configured = metrics.get("processors") or [], set(config.get("processors") or {})
        if set(used) != configured or not used or used[0] != "memory_limiter":
            problems.append(f"the metrics pipeline's processors are {used}, configured {sorted(configured)}: expected the same, "
                            "memory_limiter first (the collector's advice), so it sheds load before it runs out of memory")
        if "health_check" not in (service.get("extensions") or []):
            problems.append("the health_check extension is configured but not enabled in service.extensions")
    report.check("the metrics collector: azd up writes the apps' metrics, as deltas over OTLP/gRPC, to the monitoring module's "
                 "Application Insights; internal only, no identity, on by default unless the metrics go elsewhere", problems)


def check_outputs_and_hooks(d: Deployment, report: Report) -> None:
    problems = [f"main.bicep has no output {name} (the RBAC script and the next-step hook read it)"
                for name in REQUIRED_OUTPUTS if name not in d.main.outputs]
    hooks = d.azure_yaml.get("hooks", {})
    run = hooks.get("postprovision", {}).get("run", "")
    if not run.endswith("next-step.sh"):
        problems.append("azure.yaml has no postprovision hook running infra/hooks/next-step.sh")
    postdeploy = d.root / hooks.get("postdeploy", {}).get("run", "missing")
    if postdeploy.is_file() and "next-step.sh" not in postdeploy.read_text():
        problems.append("the postdeploy hook does not run next-step.sh after rolling the images out")
    step = d.infra / "hooks" / "next-step.sh"
    text = step.read_text() if step.is_file() else ""
    for needed in ("./scripts/setup-managed-identity-rbac.sh", "AIPROXY_GRANT_RBAC", "AIPROXY_ADMIN_URL", "/healthz"):
        if needed not in text:
            problems.append(f"infra/hooks/next-step.sh does not mention {needed}")
    report.check("azd up prints the next command; the outputs the RBAC script reads exist", problems)


def check_docs(d: Deployment, report: Report) -> None:
    problems = []
    docs = d.root / "docs" / "deploying.md"
    text = docs.read_text() if docs.is_file() else ""
    if not text:
        problems.append("docs/deploying.md is missing")
    for entry in d.parameters_json.values():
        for variable in re.findall(r"\$\{(AIPROXY_\w+)", str(entry.get("value", ""))):
            if variable not in text:
                problems.append(f"docs/deploying.md does not mention {variable}")
    for variable in ("AIPROXY_GRANT_RBAC", "AIPROXY_DATABASE_MAX_CONNECTIONS"):
        if variable not in text:
            problems.append(f"docs/deploying.md does not mention {variable}")
    for heading in ("What was verified", "not verified"):
        if heading.lower() not in text.lower():
            problems.append(f"docs/deploying.md lacks a '{heading}' section")
    report.check("docs/deploying.md covers every azd variable and says what was and was not verified", problems)


CHECKS = [check_services, check_stage_per_service, check_parameters, check_modules, check_parameters_file, check_env,
          check_identity, check_registry_pull, check_secrets, check_roles, check_ports, check_dockerfile, check_redis,
          check_redis_sku, check_postgres_sizes, check_connections, check_probes, check_admin_separation,
          check_otel_agent, check_metrics_collector, check_outputs_and_hooks, check_docs]


def self_test(report: Report) -> None:
    """The checks above must be able to fail: feed them broken inputs."""
    bogus = BicepFile(REPO / "infra" / "modules" / "region.bicep",
                      text="param used string\nparam unused string\nvar edgeEnv = [\n  { name: 'AIPROXY_BOGUS', value: used }\n]\n")
    problems = []
    if bogus.unused_params() != ["unused"]:
        problems.append(f"unused-parameter detection found {bogus.unused_params()}, expected ['unused']")
    span = bogus.var_array("edgeEnv")
    names = bogus.env_names_in(*span) if span else []
    if names != ["AIPROXY_BOGUS"]:
        problems.append(f"env extraction found {names}")
    silent = Report()
    original_stdout = sys.stdout
    try:
        sys.stdout = open(os.devnull, "w")
        check_env_reads([("AIPROXY_BOGUS", "edge", "self-test")], silent, "self-test")
    finally:
        sys.stdout.close()
        sys.stdout = original_stdout
    if silent.failed != 1:
        problems.append("a variable neither the source nor the documented list reads was accepted")
    ternary = BicepFile(REPO / "x.bicep", text="param flag bool\nparam a string\nparam xs array\nvar x = flag ? a : 'b'\nvar y = { a: 'k' }\nvar z = [for v in xs: v]\n")
    if ternary.unused_params():
        problems.append(f"a parameter used in a ternary was reported unused: {ternary.unused_params()}")
    keys_only = BicepFile(REPO / "x.bicep", text="param a string\nvar y = {\n  a: 'k'\n}\n")
    if keys_only.unused_params() != ["a"]:
        problems.append("a parameter whose name is only a property key was reported used")
    report.check("self-test: the checker rejects an unknown variable and an unused parameter", problems)


def main() -> int:
    report = Report()
    self_test(report)
    try:
        deployment = Deployment(REPO)
    except Exception as error:  # a parse failure is a failed check, not a crash without a count
        report.check("the deployment files can be read", [f"{type(error).__name__}: {error}"])
        return 1
    for check in CHECKS:
        try:
            check(deployment, report)
        except Exception as error:
            report.check(f"{check.__name__} ran to the end", [f"{type(error).__name__}: {error}"])
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
