#!/usr/bin/env python3
"""The offline infra checks must catch real mistakes in the real files.

Each case copies the deployment files to a temporary tree, breaks one thing the way a person
might, runs check_infra.py there and expects the matching check to fail. Prints one
"ok - ..." / "not ok - ..." line per case for scripts/tests/run.sh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COPIED = ["azure.yaml", "Cargo.toml", "Dockerfile.control-plane", "Dockerfile.edge", "infra", "docs", "scripts", "control-plane/src", "edge/src", "telemetry/src"]


def make_tree(root: Path) -> None:
    for rel in COPIED:
        src, dst = REPO / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        elif src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    if old not in text:
        raise AssertionError(f"{rel} no longer contains {old!r}: update this test")
    path.write_text(text.replace(old, new, 1))


def run_checker(root: Path) -> str:
    result = subprocess.run([sys.executable, str(root / "scripts/tests/check_infra.py")],
                            capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


CASES = [
    ("an edge variable no binary reads", "infra/modules/region.bicep",
     "  { name: 'AIPROXY_REGION', value: location }\n",
     "  { name: 'AIPROXY_REGION', value: location }\n  { name: 'AIPROXY_EDGE_COLOUR', value: 'blue' }\n",
     "not ok - every environment variable the Bicep sets is one the binaries read", "AIPROXY_EDGE_COLOUR"),
    ("a control-plane variable only the edge reads", "infra/modules/region.bicep",
     "  { name: 'AIPROXY_CREDENTIAL', value: 'managed-identity' }\n",
     "  { name: 'AIPROXY_CREDENTIAL', value: 'managed-identity' }\n  { name: 'AIPROXY_EDGE_STATE_DIR', value: '/tmp' }\n",
     "not ok - every environment variable the Bicep sets is one the binaries read", "AIPROXY_EDGE_STATE_DIR for the control-plane"),
    ("a variable set outside the checked blocks", "infra/modules/region.bicep",
     "          env: concat(edgeEnv, edgeServiceEnv, telemetryEnv)\n",
     "          env: concat(edgeEnv, edgeServiceEnv, telemetryEnv, [{ name: 'AIPROXY_SNEAKY', value: 'x' }])\n",
     "not ok - environment variables are set only in the checked blocks", "AIPROXY_SNEAKY"),
    ("a Dockerfile variable no binary reads", "Dockerfile.edge",
     "ENV AIPROXY_LISTEN_ADDR=0.0.0.0:8080\n", "ENV AIPROXY_LISTEN_ADDR=0.0.0.0:8080 AIPROXY_EDGE_MOOD=calm\n",
     "not ok - every environment variable the Dockerfiles set is one the binaries read", "AIPROXY_EDGE_MOOD"),
    ("an unused module parameter", "infra/modules/redis.bicep",
     "param sku string\n", "param sku string\nparam forgotten string = ''\n",
     "not ok - every Bicep parameter is used", "param forgotten"),
    ("an unused main parameter", "infra/main.bicep",
     "param logLevel string = 'info'\n", "param logLevel string = 'info'\nparam spare int = 3\n",
     "not ok - every Bicep parameter is used", "param spare"),
    ("an unused variable", "infra/modules/region.bicep",
     "var edgePort = 8080\n", "var edgePort = 8080\nvar metricsPort = 9090\n",
     "not ok - every Bicep variable is used", "var metricsPort"),
    ("a required module parameter not passed", "infra/main.bicep",
     "      edgeConcurrentRequests: edgeConcurrentRequests\n", "",
     "not ok - every module call passes exactly", "required param edgeConcurrentRequests"),
    ("a module parameter the module does not declare", "infra/main.bicep",
     "    name: 'redis-${resourceToken}'\n", "    name: 'redis-${resourceToken}'\n    shards: 2\n",
     "not ok - every module call passes exactly", "passes shards"),
    ("an output the module does not have", "infra/main.bicep",
     "redis.outputs.hostName", "redis.outputs.host",
     "not ok - every module call passes exactly", "has no output host"),
    ("a service image the templates never get", "infra/main.parameters.json",
     '    "adminImage": { "value": "${SERVICE_ADMIN_IMAGE_NAME=}" },\n', "",
     "not ok - main.parameters.json matches main.bicep", "SERVICE_ADMIN_IMAGE_NAME"),
    ("the proxy identity on the edge", "infra/modules/region.bicep",
     "reaches an edge.\n  identity: {\n    type: 'UserAssigned'\n    userAssignedIdentities: {\n",
     "reaches an edge.\n  identity: {\n    type: 'UserAssigned'\n    userAssignedIdentities: {\n      '${identity.id}': {}\n",
     "not ok - the control plane and admin app have the user-assigned identity", "edge container app carries the proxy's identity"),
    ("a system-assigned identity", "infra/modules/region.bicep",
     "    type: 'UserAssigned'\n", "    type: 'SystemAssigned,UserAssigned'\n",
     "not ok - the control plane and admin app have the user-assigned identity", "SystemAssigned"),
    ("the registry's admin user on", "infra/modules/registry.bicep",
     "adminUserEnabled: false", "adminUserEnabled: true",
     "not ok - images are pulled with an AcrPull-only identity", "admin user off"),
    ("a registry password instead of the pull identity", "infra/modules/region.bicep",
     "    server: registry.properties.loginServer\n    identity: pullIdentity.id\n",
     "    server: registry.properties.loginServer\n    username: 'pull'\n    passwordSecretRef: 'registry-password'\n",
     "not ok - images are pulled with an AcrPull-only identity", "pull identity alone"),
    ("a pull identity the app's code can use", "infra/modules/region.bicep",
     "lifecycle: 'None'", "lifecycle: 'All'",
     "not ok - images are pulled with an AcrPull-only identity", "lifecycle 'None'"),
    ("a pull identity with more than AcrPull", "infra/modules/registry.bicep",
     "var roleAcrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull\n",
     "var roleAcrPull = '7f951dda-4ed3-4680-a7ca-43fe172d538d' // AcrPull\nvar roleAcrPush = '8311e382-0749-4cb8-b61a-304f252e45ec'\n",
     "not ok - images are pulled with an AcrPull-only identity", "grants other roles"),
    ("a secret as a plain value", "infra/modules/region.bicep",
     "{ name: 'AIPROXY_ADMIN_TOKEN', secretRef: 'admin-token' }", "{ name: 'AIPROXY_ADMIN_TOKEN', value: adminToken }",
     "not ok - secrets are generated by azd", "AIPROXY_ADMIN_TOKEN as a plain value"),
    ("a secret as an output", "infra/main.bicep",
     "output AZURE_LOCATION string = location\n", "output AZURE_LOCATION string = location\noutput LEAK string = adminToken\n",
     "not ok - secrets are generated by azd", "output LEAK exposes"),
    ("a secret azd does not generate", "infra/main.bicep",
     "@metadata({ azd: { type: 'generate', config: { length: 48, noSpecial: true } } })\n@description('Credential edges present",
     "@description('Credential edges present",
     "not ok - secrets are generated by azd", "edgeToken is not generated"),
    ("a wrong role id", "infra/main.bicep",
     "var roleAzureAiUser = '53ca6127-db72-4e31-b599-04dc5da150b4'", "var roleAzureAiUser = 'b78c5d69-af96-48a3-bf8d-a8b4d589de94'",
     "not ok - role ids match ROUTES.md", "roleAzureAiUser"),
    ("a single control-plane replica allowed", "infra/main.bicep",
     "@minValue(2)\n@description('Control-plane replicas", "@minValue(1)\n@description('Control-plane replicas",
     "not ok - role ids match ROUTES.md", "controlPlaneMinReplicas"),
    ("a service built with docker.target", "azure.yaml",
     "      path: ./Dockerfile.edge\n", "      path: ./Dockerfile.edge\n      target: edge\n",
     "not ok - every azure.yaml service has its own Dockerfile", "ignored by azd's remote build"),
    ("a service without a tagged app", "infra/modules/region.bicep",
     "{ 'azd-service-name': 'edge' }", "{ 'azd-service-name': 'edges' }",
     "not ok - every azure.yaml service has its own Dockerfile", "service edge: no container app"),
    ("a Dockerfile whose last stage is not the service's runtime", "Dockerfile.edge",
     'ENTRYPOINT ["/usr/local/bin/aiproxy-edge"]\n',
     'ENTRYPOINT ["/usr/local/bin/aiproxy-edge"]\n\nFROM edge AS debug\nENTRYPOINT ["/bin/sh"]\n',
     "not ok - each service's Dockerfile ends in that service's runtime stage", "not aiproxy-edge"),
    ("a Dockerfile that builds without optimisation", "Dockerfile.edge",
     "cargo build --profile dist --locked -p aiproxy-edge", "cargo build --locked -p aiproxy-edge",
     "not ok - Dockerfiles: non-root images", "no cargo build --release (or --profile) --locked"),
    ("a Dockerfile that builds with an unoptimised profile", "Dockerfile.edge",
     "cargo build --profile dist --locked -p aiproxy-edge", "cargo build --profile dev --locked -p aiproxy-edge",
     "not ok - Dockerfiles: non-root images", "not a profile that inherits release"),
    ("a build profile that no longer inherits release", "Cargo.toml",
     'inherits = "release"', 'inherits = "dev"',
     "not ok - Dockerfiles: non-root images", "cargo build --profile dist: not a profile that inherits release"),
    ("a Dockerfile that builds both binaries", "Dockerfile.edge",
     "cargo build --profile dist --locked -p aiproxy-edge", "cargo build --profile dist --locked -p aiproxy-control-plane -p aiproxy-edge",
     "not ok - each service's Dockerfile ends in that service's runtime stage", "expected only aiproxy-edge"),
    ("a port that disagrees", "Dockerfile.control-plane",
     "AIPROXY_ADMIN_ADDR=0.0.0.0:8081", "AIPROXY_ADMIN_ADDR=0.0.0.0:9090",
     "not ok - ports agree", "AIPROXY_ADMIN_ADDR"),
    ("an image that runs as root", "Dockerfile.edge",
     "ENV AIPROXY_LISTEN_ADDR=0.0.0.0:8080\nUSER 10001:10001\n", "ENV AIPROXY_LISTEN_ADDR=0.0.0.0:8080\nUSER root\n",
     "not ok - Dockerfiles: non-root images", "runs as root"),
    ("the admin console built on Node 20", "Dockerfile.control-plane",
     "ARG NODE_VERSION=22\n", "ARG NODE_VERSION=20\n",
     "not ok - the admin console builds with Node 22", "node:20-bookworm-slim"),
    ("Azure Cache for Redis instead of Azure Managed Redis", "infra/modules/redis.bicep",
     "resource cluster 'Microsoft.Cache/redisEnterprise@2025-07-01'", "resource cluster 'Microsoft.Cache/redis@2024-03-01'",
     "not ok - Redis is Azure Managed Redis", "retiring"),
    ("a clustering policy the non-cluster client cannot use", "infra/modules/redis.bicep",
     "clusteringPolicy: 'EnterpriseCluster'", "clusteringPolicy: 'OSSCluster'",
     "not ok - Redis is Azure Managed Redis", "clusteringPolicy is not 'EnterpriseCluster'"),
    ("a Redis port that is not Azure Managed Redis' TLS port", "infra/modules/redis.bicep",
     "port: 10000", "port: 6380",
     "not ok - Redis is Azure Managed Redis", "port is not 10000"),
    ("a Redis URL without TLS", "infra/modules/region.bicep",
     "value: 'rediss://:", "value: 'redis://:",
     "not ok - Redis is Azure Managed Redis", "is not rediss://"),
    ("a Redis size that is not an Azure Managed Redis SKU", "infra/main.bicep",
     "  'Balanced_B0'\n  'Balanced_B1'\n", "  'Balanced_B0'\n  'Premium'\n",
     "not ok - Redis: one SKU parameter", "not Azure Managed Redis SKUs: ['Premium']"),
    ("a Redis capacity apart from the SKU", "infra/modules/redis.bicep",
     "  sku: {\n    name: sku\n  }\n", "  sku: {\n    name: sku\n    capacity: 0\n  }\n",
     "not ok - Redis: one SKU parameter", "SKU/capacity pair"),
    ("a Postgres size with the wrong connection limit", "infra/main.bicep",
     "Standard_B2s: { tier: 'Burstable', userConnections: 414 }", "Standard_B2s: { tier: 'Burstable', userConnections: 2000 }",
     "not ok - Postgres: SKU, tier, storage", "postgresSkus[Standard_B2s]"),
    ("a Postgres storage size Azure does not offer", "infra/main.bicep",
     "@allowed([32, 64,", "@allowed([32, 100, 64,",
     "not ok - Postgres: SKU, tier, storage", "does not offer: ['100']"),
    ("high availability on Burstable not refused", "infra/main.bicep",
     "postgresHighAvailability && postgresTier == 'Burstable'", "false",
     "not ok - Postgres: SKU, tier, storage", "does not refuse postgresHighAvailability"),
    ("the default Postgres too small for the replicas' pools", "infra/main.bicep",
     "param postgresSkuName string = 'Standard_B2s'", "param postgresSkuName string = 'Standard_B1ms'",
     "not ok - Postgres connections", "default Standard_B1ms allows 35"),
    ("a default pool the default Postgres cannot hold", "infra/main.bicep",
     "param databaseMaxConnections int = 10", "param databaseMaxConnections int = 40",
     "not ok - Postgres connections", "allows 414 user connections"),
    ("a connection count without the LISTEN connection", "infra/main.bicep",
     "controlPlaneReplicasAtMost * (databaseMaxConnections + 1)", "controlPlaneReplicasAtMost * databaseMaxConnections",
     "not ok - Postgres connections", "postgresConnectionsNeeded is not"),
    ("a pool too large for the server, not refused", "infra/main.bicep",
     "postgresConnectionsNeeded > postgresUserConnections", "false",
     "not ok - Postgres connections", "does not refuse a pool"),
    ("a probe threshold Container Apps refuses", "infra/modules/region.bicep",
     "    failureThreshold: 10\n", "    failureThreshold: 60\n",
     "not ok - probes:", "failureThreshold 60 is outside"),
    ("probes on the placeholder image", "infra/modules/region.bicep",
     "probes: empty(edgeImage) ? [] : edgeProbes", "probes: edgeProbes",
     "not ok - probes:", "also apply to the placeholder image"),
    ("an ingress port that follows the placeholder (azd deploy keeps it)", "infra/modules/region.bicep",
     "targetPort: edgePort", "targetPort: empty(edgeImage) ? 80 : edgePort",
     "not ok - probes:", "would keep the placeholder's port"),
    ("the admin IP rules on the edges' gRPC app", "infra/modules/region.bicep",
     "gRPC port is here.\n      ingress: {\n",
     "gRPC port is here.\n      ingress: {\n        ipSecurityRestrictions: [for (range, i) in adminAllowedIpRanges: { name: 'admin-${i}', action: 'Allow', ipAddressRange: range }]\n",
     "not ok - the admin IP rules sit on their own app", "the rules would cut the edges off"),
    ("the admin app's gRPC listener reachable", "infra/modules/region.bicep",
     "value: '127.0.0.1:${grpcPort}'", "value: '0.0.0.0:${grpcPort}'",
     "not ok - the admin IP rules sit on their own app", "127.0.0.1"),
    ("the admin URL on another app", "infra/main.bicep",
     "regionStacks[0].outputs.adminFqdn}'", "regionStacks[0].outputs.edgeFqdn}'",
     "not ok - the admin IP rules sit on their own app", "AIPROXY_ADMIN_URL is not the admin app's address"),
    ("the managed OpenTelemetry agent off by default", "infra/main.bicep",
     "param enableManagedOpenTelemetry bool = true", "param enableManagedOpenTelemetry bool = false",
     "not ok - the managed OpenTelemetry agent is on by default", "defaults to false"),
    ("an Application Insights connection string not from the monitoring module", "infra/main.bicep",
     "appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString", "appInsightsConnectionString: ''",
     "not ok - the managed OpenTelemetry agent is on by default", "does not pass monitoring.outputs.appInsightsConnectionString"),
    ("the agent wired to Application Insights even when switched off", "infra/modules/region.bicep",
     "appInsightsConfiguration: enableManagedOpenTelemetry ? { connectionString: appInsightsConnectionString } : null",
     "appInsightsConfiguration: { connectionString: appInsightsConnectionString }",
     "not ok - the managed OpenTelemetry agent is on by default", "appInsightsConfiguration is not"),
    ("Application Insights refusing the agent's connection string", "infra/modules/monitoring.bicep",
     "DisableLocalAuth: false", "DisableLocalAuth: true",
     "not ok - the managed OpenTelemetry agent is on by default", "disables local authentication"),
    ("traces not sent to Application Insights", "infra/modules/region.bicep",
     "tracesConfiguration: { destinations: ['appInsights'] }", "tracesConfiguration: { destinations: [] }",
     "not ok - the managed OpenTelemetry agent is on by default", "does not send traces to 'appInsights'"),
    ("metrics sent to Application Insights (it takes none from the agent)", "infra/modules/region.bicep",
     "metricsConfiguration: empty(otlpMetricsEndpoint) ? null : { destinations: [otlpMetricsDestination] }",
     "metricsConfiguration: { destinations: ['appInsights'] }",
     "not ok - the managed OpenTelemetry agent is on by default", "takes no metrics"),
    ("an app without OTEL_SERVICE_NAME", "infra/modules/region.bicep",
     "env: concat(controlPlaneEnv, adminListenerEnv, adminServiceEnv, telemetryEnv)",
     "env: concat(controlPlaneEnv, adminListenerEnv, telemetryEnv)",
     "not ok - the managed OpenTelemetry agent is on by default", "container app admin gets OTEL_SERVICE_NAME from 0"),
    ("two apps with one service name", "infra/modules/region.bicep",
     "{ name: 'OTEL_SERVICE_NAME', value: 'aiproxy-admin' }", "{ name: 'OTEL_SERVICE_NAME', value: 'aiproxy-control-plane' }",
     "not ok - the managed OpenTelemetry agent is on by default", "both report service.name aiproxy-control-plane"),
    ("no resource attributes", "infra/modules/region.bicep",
     "    { name: 'OTEL_RESOURCE_ATTRIBUTES', value: resourceAttributes }\n", "",
     "not ok - the managed OpenTelemetry agent is on by default", "does not set OTEL_RESOURCE_ATTRIBUTES"),
    ("an OTEL variable neither the telemetry crate nor the SDK reads", "infra/modules/region.bicep",
     "    { name: 'OTEL_RESOURCE_ATTRIBUTES', value: resourceAttributes }\n",
     "    { name: 'OTEL_RESOURCE_ATTRIBUTES', value: resourceAttributes }\n    { name: 'OTEL_EXPORTER_OTLP_COMPRESSION', value: 'gzip' }\n",
     "not ok - every environment variable the Bicep sets is one the binaries read", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    ("OTLP headers as a plain value", "infra/modules/region.bicep",
     "{ name: 'OTEL_EXPORTER_OTLP_HEADERS', secretRef: 'otlp-headers' }", "{ name: 'OTEL_EXPORTER_OTLP_HEADERS', value: otlpHeaders }",
     "not ok - secrets are generated by azd", "OTEL_EXPORTER_OTLP_HEADERS as a plain value"),
    ("a metrics endpoint with the agent off, not refused", "infra/main.bicep",
     "!enableManagedOpenTelemetry && !empty(otlpMetricsEndpoint)", "false",
     "not ok - OTLP destinations", "does not refuse otlpMetricsEndpoint"),
    ("OTLP headers as a plain parameter", "infra/main.bicep",
     "@secure()\n@description('Optional headers for otlpMetricsEndpoint", "@description('Optional headers for otlpMetricsEndpoint",
     "not ok - OTLP destinations", "otlpMetricsHeaders is missing or not @secure()"),
    ("metrics sent to the collector as cumulative totals", "infra/modules/region.bicep",
     "{ name: 'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE', value: 'delta' }",
     "{ name: 'OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE', value: 'cumulative' }",
     "not ok - the metrics collector", "do not send deltas"),
    ("the collector listening on another port than the apps send to", "infra/modules/metrics-collector.bicep",
     "        endpoint: 0.0.0.0:4317\n", "        endpoint: 0.0.0.0:4318\n",
     "not ok - the metrics collector", "does not take gRPC alone on 0.0.0.0:4317"),
    ("the collector's metrics pipeline not reaching Application Insights", "infra/modules/metrics-collector.bicep",
     "      exporters: [azuremonitor]\n", "      exporters: [debug]\n",
     "not ok - the metrics collector", "from the otlp receiver to the azuremonitor exporter"),
    ("the collector's config no longer YAML", "infra/modules/metrics-collector.bicep",
     "  batch: {}\n", "  batch: {\n",
     "not ok - the metrics collector", "is not valid YAML"),
    ("the collector reachable from the internet", "infra/modules/metrics-collector.bicep",
     "      ingress: {\n        external: false\n", "      ingress: {\n        external: true\n",
     "not ok - the metrics collector", "reachable from outside the environment"),
    ("the collector deployed beside the operator's own OTLP endpoint", "infra/modules/region.bicep",
     " && empty(otlpEndpoint)\n", "\n",
     "not ok - the metrics collector", "deployMetricsCollector is"),
    ("the collector's connection string as a plain value", "infra/modules/metrics-collector.bicep",
     "{ name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', secretRef: 'appinsights-connection-string' }",
     "{ name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }",
     "not ok - the metrics collector", "is not a secretRef"),
    ("the collector off by default", "infra/main.bicep",
     "param metricsCollector bool = true\n", "param metricsCollector bool = false\n",
     "not ok - the metrics collector", "does not default to true"),
    ("the collector deployed when an OTLP metrics endpoint is given", "infra/modules/region.bicep",
     "&& empty(otlpMetricsEndpoint)", "&& !empty(otlpMetricsEndpoint)",
     "not ok - the metrics collector", "deployMetricsCollector is"),
    ("the collector's condition joined with ||", "infra/modules/region.bicep",
     "!empty(metricsCollectorImage) && empty(otlpMetricsEndpoint)", "!empty(metricsCollectorImage) || empty(otlpMetricsEndpoint)",
     "not ok - the metrics collector", "deployMetricsCollector is"),
    ("the apps pointed at the collector when there is none", "infra/modules/region.bicep",
     "  deployMetricsCollector\n    ? [", "  !deployMetricsCollector\n    ? [",
     "not ok - the metrics collector", "and only then"),
    ("the collector's port exposed under another number", "infra/modules/metrics-collector.bicep",
     "            exposedPort: otlpGrpcPort\n", "            exposedPort: 14317\n",
     "not ok - the metrics collector", "target and exposed"),
    ("a collector probe on a path its health check does not serve", "infra/modules/metrics-collector.bicep",
     "              type: 'Liveness'\n              httpGet: { path: '/', port: healthPort }",
     "              type: 'Liveness'\n              httpGet: { path: '/healthz', port: healthPort }",
     "not ok - the metrics collector", "HTTP GETs of its health_check"),
    ("the collector's memory limiter configured but not used", "infra/modules/metrics-collector.bicep",
     "      processors: [memory_limiter, batch]\n", "      processors: [batch]\n",
     "not ok - the metrics collector", "memory_limiter first"),
    ("an output the RBAC script reads, missing", "infra/main.bicep",
     "output AZURE_SUBSCRIPTION_ID string = subscription().subscriptionId\n", "",
     "not ok - azd up prints the next command", "no output AZURE_SUBSCRIPTION_ID"),
    ("no postprovision hook", "azure.yaml",
     "  postprovision:\n    shell: sh\n    run: ./infra/hooks/next-step.sh\n    continueOnError: true\n", "",
     "not ok - azd up prints the next command", "no postprovision hook"),
    ("an azd variable the docs do not mention", "infra/main.parameters.json",
     '"regions": { "value": "${AIPROXY_REGIONS=}" },', '"regions": { "value": "${AIPROXY_REGION_LIST=}" },',
     "not ok - docs/deploying.md covers every azd variable", "AIPROXY_REGION_LIST"),
]


def main() -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine"
        make_tree(pristine)
        baseline = run_checker(pristine)
        if "not ok" in baseline:
            print("not ok - the unmodified files pass the checker (so each case below fails for its own reason)")
            print("\n".join(f"#   {line}" for line in baseline.splitlines() if line.startswith(("not ok", "#   "))))
            failed += 1
        else:
            print("ok - the unmodified files pass the checker (so each case below fails for its own reason)")
        for number, (label, rel, old, new, expected_line, expected_detail) in enumerate(CASES):
            root = Path(tmp) / f"case{number}"
            make_tree(root)
            name = "checker catches " + label
            try:
                edit(root, rel, old, new)
                output = run_checker(root)
            except (AssertionError, OSError, subprocess.SubprocessError) as error:
                print(f"not ok - {name}\n#   {error}")
                failed += 1
                continue
            # The failing check, followed (in its "#   " lines) by the expected detail.
            m = re.search(re.escape(expected_line) + r"[^\n]*\n((?:#   [^\n]*\n)*)", output)
            if m and expected_detail in m.group(1):
                print(f"ok - {name}")
            else:
                failed += 1
                print(f"not ok - {name}")
                print(f"#   expected '{expected_line}' with '{expected_detail}'; the checker printed:")
                print("\n".join(f"#     {line}" for line in output.splitlines() if not line.startswith("# ")))
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
