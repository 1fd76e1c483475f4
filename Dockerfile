# presenced: multi-stage build, small non-root runtime image.
# Not built in this project's CI (no Docker engine there); checked by reading.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY config ./config
# The browser client and the roster page are compiled in.
COPY client ./client
RUN cargo build --release --locked --bin presenced

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home presenced
COPY --from=build /src/target/release/presenced /usr/local/bin/presenced
COPY config/default.toml /etc/presenced/config.toml
USER presenced
# Listen on all interfaces inside the container; set PRESENCED_INGEST_TOKEN at run time.
ENV PRESENCED_BIND=0.0.0.0:3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:3000/health || exit 1
ENTRYPOINT ["/usr/local/bin/presenced", "--config", "/etc/presenced/config.toml"]
