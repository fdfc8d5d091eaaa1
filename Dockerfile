# syntax=docker/dockerfile:1
# Builds both binaries of the AI Proxy and the admin console; two final targets:
#   docker build --target control-plane -t aiproxy-control-plane .
#   docker build --target edge          -t aiproxy-edge .
# azd builds them the same way (azure.yaml, docker.target).

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

# ---- admin console (Vite/React) -> /src/admin-web/dist
FROM node:${NODE_VERSION}-bookworm-slim AS admin-web
WORKDIR /src/admin-web
COPY admin-web/package.json admin-web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY admin-web/ ./
RUN npm run build

# ---- both Rust binaries (protoc is vendored; only a C compiler is needed, and this image has one)
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aiproxy-control-plane -p aiproxy-edge \
 && mkdir -p /out \
 && cp target/release/aiproxy-control-plane target/release/aiproxy-edge /out/

# ---- common runtime: slim Debian, CA roots for TLS to Azure, an unprivileged user
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 aiproxy \
 && useradd --system --uid 10001 --gid aiproxy --home-dir /app --no-create-home --shell /usr/sbin/nologin aiproxy \
 && mkdir -p /app \
 && chown aiproxy:aiproxy /app
WORKDIR /app

# ---- control plane: admin console/API on 8081, gRPC on 50051
FROM runtime AS control-plane
COPY --from=build /out/aiproxy-control-plane /usr/local/bin/aiproxy-control-plane
COPY --from=admin-web /src/admin-web/dist /app/admin-web/dist
# Embedded mode (no AIPROXY_DATABASE_URL) keeps its SQLite database and generated keys here.
RUN mkdir -p /app/data && chown aiproxy:aiproxy /app/data
ENV AIPROXY_GRPC_ADDR=0.0.0.0:50051 \
    AIPROXY_ADMIN_ADDR=0.0.0.0:8081 \
    AIPROXY_ADMIN_WEB_DIR=/app/admin-web/dist \
    AIPROXY_DATA_DIR=/app/data
USER 10001:10001
EXPOSE 8081 50051
ENTRYPOINT ["/usr/local/bin/aiproxy-control-plane"]

# ---- edge: client traffic on 8080
FROM runtime AS edge
COPY --from=build /out/aiproxy-edge /usr/local/bin/aiproxy-edge
RUN mkdir -p /var/lib/aiproxy-edge && chown aiproxy:aiproxy /var/lib/aiproxy-edge
ENV AIPROXY_LISTEN_ADDR=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/aiproxy-edge"]
