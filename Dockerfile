# syntax=docker/dockerfile:1.7
# One image per function, for the k3s pods (k3s/README.md):
#   /shim                    the runtime-interface shim, the entrypoint
#   /var/task/<function>     the function's Lambda bootstrap binary
#   /var/task/template.yaml  routes, schedules and timeouts for the shim
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg FUNCTION=api-auth --build-arg HONEYDUE_VERSION=$(git rev-parse --short=12 HEAD) \
#     -t registry.example.com/honeydue/api-auth:$(git rev-parse --short=12 HEAD) .
#
# The builder runs on the build machine's platform and cross-compiles to
# the target's (TARGETARCH amd64 or arm64), so no emulation is needed.

ARG RUST_VERSION=1.95.0

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETARCH
ARG FUNCTION
ARG HONEYDUE_VERSION=dev
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The C cross compiler (aws-lc-sys and ring compile C) for the other
# architecture; nothing when building for the build machine's own.
# DL3008 (pin apt versions) is ignored: these come from Debian stable, whose
# point releases would break any pin; the Rust toolchain itself is pinned.
# hadolint ignore=DL3008
RUN case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH=${TARGETARCH}" >&2; exit 1 ;; \
    esac \
    && if [ "$(gcc -dumpmachine)" != "${gnu//x86-64/x86_64}" ]; then \
         apt-get update \
         && apt-get install -y --no-install-recommends "gcc-${gnu}" "libc6-dev-${TARGETARCH}-cross" \
         && rm -rf /var/lib/apt/lists/*; \
       fi \
    && rustup target add "$triple" \
    && echo "$triple" > /target-triple
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    AR_x86_64_unknown_linux_gnu=x86_64-linux-gnu-ar \
    SQLX_OFFLINE=true \
    HONEYDUE_VERSION=${HONEYDUE_VERSION}
WORKDIR /src
COPY . .
# The registry and target caches are shared by every function's build, so
# the second image reuses the first one's compiled dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    test -n "$FUNCTION" || { echo "build with --build-arg FUNCTION=<function>" >&2; exit 1; } \
    && triple=$(cat /target-triple) \
    && cargo build --release --locked --target "$triple" \
         -p honeydue-shim --bin shim -p "$FUNCTION" --bin "$FUNCTION" \
    && mkdir -p /out \
    && cp "target/${triple}/release/shim" /out/shim \
    && cp "target/${triple}/release/${FUNCTION}" /out/function

# glibc, libgcc and CA certificates, no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG FUNCTION
ARG HONEYDUE_VERSION=dev
LABEL org.opencontainers.image.title="honeydue-${FUNCTION}" \
      org.opencontainers.image.description="honeyDue function ${FUNCTION} behind the runtime-interface shim" \
      org.opencontainers.image.version="${HONEYDUE_VERSION}"
COPY --from=builder /out/shim /shim
COPY --from=builder /out/function /var/task/${FUNCTION}
COPY template.yaml /var/task/template.yaml
# Defaults for `docker run IMAGE`; the manifests pass the flags explicitly.
ENV SHIM_TEMPLATE=/var/task/template.yaml \
    SHIM_BIN_DIR=/var/task \
    SHIM_FUNCTION=${FUNCTION}
USER 65532:65532
# 8080: the function's routes; 9090: probes and metrics (never behind a Service).
EXPOSE 8080 9090
ENTRYPOINT ["/shim"]
CMD ["pod"]
