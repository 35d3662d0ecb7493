# syntax=docker/dockerfile:1
# The starling image: one binary (`starling agent`, `starling probe`, the
# CLI) on distroless's glibc base, which also carries the CA bundle an
# https alert sink's ca_file can point at. Build from the repository root:
#   docker build -t REGISTRY/starling:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image gets exactly the dependency versions CI tested.
RUN cargo build --release --locked -p starling --bin starling \
    && strip target/release/starling

# Same Debian release as the build stage, so the glibc the binary was
# linked against is the one it runs on.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/starling /usr/local/bin/starling
# Non-root by default (the overlay probe runs so); the agent's DaemonSets
# run it as root without capabilities, for the hostPath data dir.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/starling"]
