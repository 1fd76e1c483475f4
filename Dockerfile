# presenced: multi-stage build, small non-root runtime image.
# Not built in this project's CI (no Docker engine there); checked by reading.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
COPY config ./config
# The browser client and the roster page are compiled in.
COPY client ./client
# The image ships the binary without debug info; the release profile keeps line
# tables (debug = 1) for local profiling only.
RUN cargo build --release --locked --bin presenced \
 && strip /src/target/release/presenced

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home presenced \
 && mkdir -p /var/lib/presenced \
 && chown presenced:presenced /var/lib/presenced
COPY --from=build /src/target/release/presenced /usr/local/bin/presenced
COPY config/default.toml /etc/presenced/config.toml
# Where persistence.path should point (e.g. /var/lib/presenced/presence.snapshot);
# nothing is written unless it is set.
VOLUME /var/lib/presenced
USER presenced
# Listen on all interfaces inside the container; set PRESENCED_INGEST_TOKEN at run time.
ENV PRESENCED_BIND=0.0.0.0:3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:3000/health || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/presenced", "--config", "/etc/presenced/config.toml"]
