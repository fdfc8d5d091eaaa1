#!/usr/bin/env python3
"""Offline checks of the deployment files: azure.yaml, infra/**/*.bicep, the Dockerfile.

No Bicep compiler, Docker or Azure is available where this runs, so this checks what can be
checked from the text: every azd service has a Dockerfile target and a tagged container app;
every Bicep parameter is used and every module call matches the module's parameters and
outputs; every environment variable the Bicep or the Dockerfile sets is one the binaries read;
secrets stay secrets; the identity and role facts the design depends on hold.

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
from infra_text import BicepFile, dockerfile_stages, parse_simple_yaml, top_level_keys  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# Variables the binaries read, from the configuration contract (ARCHITECTURE.md and the
# binaries' authors). Used only for a variable the Rust source does not mention literally yet.
CONTROL_PLANE_READS = {
    "AIPROXY_DATABASE_URL", "AIPROXY_REDIS_URL", "AIPROXY_GRPC_ADDR", "AIPROXY_ADMIN_ADDR",
    "AIPROXY_ADMIN_TOKEN", "AIPROXY_ENCRYPTION_KEY", "AIPROXY_EDGE_TOKEN", "AIPROXY_CATALOG_TOKEN",
    "AIPROXY_CREDENTIAL", "AIPROXY_ALLOW_INSECURE_UPSTREAMS", "AIPROXY_DATA_DIR",
    "AIPROXY_ADMIN_WEB_DIR", "RUST_LOG",
    # Azure's own variables, read by the credential chain (often inside azure_identity).
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE", "IDENTITY_ENDPOINT", "IDENTITY_HEADER",
}
EDGE_READS = {
    "AIPROXY_CONTROL_PLANE_URL", "AIPROXY_LISTEN_ADDR", "AIPROXY_REGION", "AIPROXY_EDGE_STATE_DIR",
    "AIPROXY_EDGE_TOKEN", "AIPROXY_EDGE_ID", "RUST_LOG",
}
# Standard OpenTelemetry exporter variables. Allowed explicitly for both binaries: the OTLP
# exporter is a later piece of work, and the SDK reads these itself once it is there.
OTEL_STANDARD = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}

FALLBACK_READS = {
    "control-plane": CONTROL_PLANE_READS | OTEL_STANDARD,
    "edge": EDGE_READS | OTEL_STANDARD,
}
SOURCE_DIRS = {"control-plane": "control-plane/src", "edge": "edge/src"}

# Which binary each environment-variable block of infra/modules/region.bicep feeds.
ENV_BLOCKS = {
    "controlPlaneEnv": ["control-plane"],
    "edgeEnv": ["edge"],
    "telemetryEnv": ["control-plane", "edge"],
}
# Dockerfile stages whose ENV reaches a binary.
DOCKER_STAGE_BINARIES = {"control-plane": ["control-plane"], "edge": ["edge"], "runtime": ["control-plane", "edge"]}

SECRET_ENV = {
    "AIPROXY_DATABASE_URL", "AIPROXY_REDIS_URL", "AIPROXY_ADMIN_TOKEN", "AIPROXY_EDGE_TOKEN",
    "AIPROXY_CATALOG_TOKEN", "AIPROXY_ENCRYPTION_KEY",
}
GENERATED_SECRETS = ["adminToken", "edgeToken", "catalogToken", "encryptionKeySeed", "postgresAdminPassword"]
ROLE_IDS = {
    "roleOpenAiUser": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
    "roleAzureAiUser": "53ca6127-db72-4e31-b599-04dc5da150b4",
    "roleSearchIndexDataReader": "1407120a-92aa-4202-b7e9-c0e197c71c8f",
}


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

def source_mentions(binary: str, variable: str) -> bool:
    src = REPO / SOURCE_DIRS[binary]
    if not src.is_dir():
        return False
    pattern = re.compile(rf"(?<![A-Z0-9_]){re.escape(variable)}(?![A-Z0-9_])")
    for path in src.rglob("*.rs"):
        try:
            if pattern.search(path.read_text(errors="replace")):
                return True
        except OSError:
            continue
    return False


def check_env_reads(settings: list[tuple[str, str, str]], report: Report, label: str) -> None:
    """settings: (variable, binary, where). Each must be read by that binary."""
    problems, how = [], []
    for variable, binary, where in sorted(set(settings)):
        if source_mentions(binary, variable):
            how.append(f"{variable} ({binary}, {where}): found in {SOURCE_DIRS[binary]}")
        elif variable in FALLBACK_READS[binary]:
            why = "explicit OpenTelemetry allow-list" if variable in OTEL_STANDARD else "documented list; not in the source yet"
            how.append(f"{variable} ({binary}, {where}): {why}")
        else:
            problems.append(f"{where} sets {variable} for the {binary}, which neither {SOURCE_DIRS[binary]} nor the documented list reads")
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
        self.dockerfile = root / "Dockerfile"
        self.azure_yaml = parse_simple_yaml((root / "azure.yaml").read_text())
        self.stages = dockerfile_stages(self.dockerfile.read_text())
        self.bicep_files = [BicepFile(p) for p in sorted(self.infra.rglob("*.bicep"))]
        self.by_path = {f.path: f for f in self.bicep_files}
        self.main = self.by_path[self.infra / "main.bicep"]
        self.region = self.by_path[self.infra / "modules" / "region.bicep"]
        self.parameters_json = json.loads((self.infra / "main.parameters.json").read_text())["parameters"]
        self.env_settings, self.env_block_problems = bicep_env_settings(self.region)


def check_services(d: Deployment, report: Report) -> None:
    services = d.azure_yaml.get("services", {})
    problems = [] if services else ["azure.yaml has no services"]
    for name, svc in services.items():
        docker = svc.get("docker", {})
        path = (d.root / svc.get("project", ".") / docker.get("path", "Dockerfile")).resolve()
        if svc.get("host") != "containerapp":
            problems.append(f"service {name}: host is {svc.get('host')!r}, expected containerapp")
        if not path.is_file():
            problems.append(f"service {name}: {path} does not exist")
        elif path == d.dockerfile.resolve() and docker.get("target") not in d.stages:
            problems.append(f"service {name}: Dockerfile has no stage '{docker.get('target')}' (stages: {', '.join(d.stages)})")
        tag = f"'azd-service-name': '{name}'"
        if not any(tag in f.code for f in d.bicep_files):
            problems.append(f"service {name}: no container app in infra/ is tagged {tag}, so azd cannot find where to deploy it")
    report.check("every azure.yaml service builds a Dockerfile target and has a tagged container app", problems)

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
        for m in re.finditer(r"\b(\w+)(?:\[[^\]]*\])?\.outputs\.(\w+)", f.masked):
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
    report.check("main.parameters.json matches main.bicep (no parameter azd would have to ask for)", problems)


def check_env(d: Deployment, report: Report) -> None:
    problems = d.env_block_problems + stray_env_names(d.bicep_files, d.region, d.root)
    report.check("environment variables are set only in the checked blocks of region.bicep", problems)
    check_env_reads(d.env_settings, report, "every environment variable the Bicep sets is one the binaries read")

    docker_settings = []
    for stage, binaries in DOCKER_STAGE_BINARIES.items():
        for variable in d.stages.get(stage, {}).get("env", {}):
            for binary in binaries:
                docker_settings.append((variable, binary, f"Dockerfile stage {stage}"))
    check_env_reads(docker_settings, report, "every environment variable the Dockerfile sets is one the binaries read")


def check_identity(d: Deployment, report: Report) -> None:
    settings = d.env_settings
    problems: list[str] = []
    resources = d.region.blocks("resource")
    cp_open, cp_close = resources["controlPlane"][1:]
    edge_open = resources["edge"][1]
    if "identity" in top_level_keys(d.region.masked, edge_open):
        problems.append("the edge container app has an identity block; edges must have none")
    edge_vars = {v for v, b, _ in settings if b == "edge"}
    azure_on_edge = sorted(v for v in edge_vars if v.startswith(("AZURE_", "IDENTITY_")))
    if azure_on_edge:
        problems.append(f"the edge gets Azure variables: {', '.join(azure_on_edge)}")
    cp_body = d.region.code[cp_open:cp_close]
    if not re.search(r"type:[ \t]*'UserAssigned'", cp_body):
        problems.append("the control plane's identity is not 'UserAssigned'")
    if "AZURE_CLIENT_ID" not in {v for v, b, _ in settings if b == "control-plane"}:
        problems.append("the control plane does not get AZURE_CLIENT_ID")
    for f in d.bicep_files:
        if "SystemAssigned" in f.code:
            problems.append(f"{f.path.relative_to(d.root)} mentions a SystemAssigned identity")
    report.check("the control plane has the user-assigned identity and AZURE_CLIENT_ID; edges have no identity", problems)


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
    cp_env = d.stages.get("control-plane", {}).get("env", {})
    edge_env = d.stages.get("edge", {}).get("env", {})
    expected = [("AIPROXY_ADMIN_ADDR", cp_env, ports.get("adminPort")), ("AIPROXY_GRPC_ADDR", cp_env, ports.get("grpcPort")),
                ("AIPROXY_LISTEN_ADDR", edge_env, ports.get("edgePort"))]
    for variable, env, port in expected:
        if env.get(variable) != f"0.0.0.0:{port}":
            problems.append(f"Dockerfile {variable}={env.get(variable)} but region.bicep listens on 0.0.0.0:{port}")
    for stage, port_names in (("control-plane", ["adminPort", "grpcPort"]), ("edge", ["edgePort"])):
        for port_name in port_names:
            if ports.get(port_name) not in d.stages.get(stage, {}).get("expose", []):
                problems.append(f"Dockerfile stage {stage} does not EXPOSE {ports.get(port_name)} ({port_name})")
    report.check("ports agree between the Dockerfile and the Bicep", problems)


def check_dockerfile(d: Deployment, report: Report) -> None:
    problems = []

    def base_image(stage: str) -> str:
        seen = set()
        while stage in d.stages and stage not in seen:
            seen.add(stage)
            stage = d.stages[stage]["from"].lower()
        return stage

    for stage in ("control-plane", "edge"):
        if stage not in d.stages:
            problems.append(f"Dockerfile has no stage {stage}")
            continue
        if base_image(stage) != "debian:bookworm-slim":
            problems.append(f"stage {stage} runs on {base_image(stage)}, expected debian:bookworm-slim")
        user = d.stages[stage]["user"] or d.stages.get(d.stages[stage]["from"].lower(), {}).get("user")
        if not user or user.split(":")[0] in ("0", "root"):
            problems.append(f"stage {stage} runs as {user or 'root (no USER)'}")
    runtime_lines = " ".join(d.stages.get("runtime", {}).get("lines", []))
    if "ca-certificates" not in runtime_lines:
        problems.append("the runtime stage does not install ca-certificates")
    build = " ".join(d.stages.get("build", {}).get("lines", []))
    if "cargo build --release --locked -p aiproxy-control-plane -p aiproxy-edge" not in build:
        problems.append("the build stage does not run cargo build --release --locked for both binaries")
    cp_lines = " ".join(d.stages.get("control-plane", {}).get("lines", []))
    cp_env = d.stages.get("control-plane", {}).get("env", {})
    if not re.search(r"COPY --from=admin-web \S*admin-web/dist /app/admin-web/dist", cp_lines):
        problems.append("the control-plane stage does not copy admin-web/dist to /app/admin-web/dist")
    if cp_env.get("AIPROXY_ADMIN_WEB_DIR") != "/app/admin-web/dist":
        problems.append("AIPROXY_ADMIN_WEB_DIR is not /app/admin-web/dist in the control-plane stage")
    report.check("Dockerfile: two non-root targets on debian:bookworm-slim, both binaries, the admin console inside", problems)

    # Inputs the image build needs that other work provides; not failures of these files.
    for needed in ("Cargo.lock", "admin-web/package.json", "admin-web/package-lock.json"):
        if not (d.root / needed).exists():
            Report.note(f"{needed} is not in the tree yet; `docker build` needs it (COPY/--locked)")


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
    for heading in ("What was verified", "not verified"):
        if heading.lower() not in text.lower():
            problems.append(f"docs/deploying.md lacks a '{heading}' section")
    report.check("docs/deploying.md covers every azd variable and says what was and was not verified", problems)


CHECKS = [check_services, check_parameters, check_modules, check_parameters_file, check_env, check_identity,
          check_secrets, check_roles, check_ports, check_dockerfile, check_docs]


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
