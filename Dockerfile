# syntax=docker/dockerfile:1
# lockstep as a small static image: one musl binary, CA certificates, nothing else.
#
#   docker build -t lockstep:dev .
#
# deploy/deployment.yaml runs image lockstep:dev; push it to your registry under your
# own name (and pin it by digest) for a real cluster.

ARG RUST_VERSION=1.95

# ---- build: a statically linked binary (Alpine's Rust targets musl and links statically).
FROM rust:${RUST_VERSION}-alpine AS build
# git2's https and ssh transports link OpenSSL and zlib (libgit2 and libssh2 are built
# from the crates' bundled sources): take the static archives so the result has no
# dynamic dependency at all.
RUN apk add --no-cache gcc musl-dev binutils pkgconf perl make \
    openssl-dev openssl-libs-static zlib-dev zlib-static
ENV OPENSSL_STATIC=1 \
    PKG_CONFIG_ALL_STATIC=1 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build tree between builds on the same machine.
# readelf refuses a binary that still asks for a dynamic loader.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lockstep \
 && install -D -m 0755 target/release/lockstep /out/lockstep \
 && ! (readelf -l /out/lockstep | grep -q 'Requesting program interpreter') \
 && mkdir -p /out/tmp /cache \
 && chmod 1777 /out/tmp

# ---- run: nothing but the binary, CA roots for Git and Vault over https, and the
# directories it writes (emptyDirs in deploy/ cover them under a read-only root).
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/ /
COPY --from=build --chown=65532:65532 /cache /var/cache/lockstep
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/tmp \
    LOCKSTEP_CACHE_DIR=/var/cache/lockstep
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/lockstep"]
CMD ["--help"]
