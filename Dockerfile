# Multi-stage build of the production binary; the runtime image holds only the binary,
# its config and libpq.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libpq-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p production

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 10001 interop
WORKDIR /app
COPY --from=build /src/target/release/production /usr/local/bin/production
COPY config ./config
RUN mkdir -p data && chown interop:interop data
USER interop
EXPOSE 8080
CMD ["production", "--config", "config/docker.toml"]
