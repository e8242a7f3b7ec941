# The image `make image` builds without Docker (hack/image, internal/imagebuild),
# for users who build with Docker: the same binaries, built with the same flags,
# the same user, entrypoint, environment, labels and SBOM on distroless/static,
# which carries the passwd entry and CA certificates that make image writes
# itself. internal/imagebuild/dockerfile_test.go checks that the two agree.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg CREATED=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) .
#
# (make docker-build passes these.)
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
COPY hack/image/ hack/image/
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags "-s -w -X github.com/scep-operator/scep-operator/internal/version.version=${VERSION} -X github.com/scep-operator/scep-operator/internal/version.revision=${REVISION}" -o out/ ./cmd/manager ./cmd/scepctl
RUN go run ./hack/image sbom -version "${VERSION}" -revision "${REVISION}" -created "${CREATED}" -platform "${TARGETOS}/${TARGETARCH}" -o sbom.cdx.json out

FROM gcr.io/distroless/static:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.source="https://github.com/scep-operator/scep-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.title="scep-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /
COPY --from=builder /workspace/out/manager /workspace/out/scepctl /
COPY --from=builder /workspace/sbom.cdx.json /usr/share/doc/scep-operator/sbom.cdx.json
USER 65532:65532
ENTRYPOINT ["/manager"]
