# keysd and keysctl in a small image. Built by docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/keysd ./cmd/keysd && \
    CGO_ENABLED=0 go build -trimpath -o /out/keysctl ./cmd/keysctl

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keysd /out/keysctl /usr/local/bin/
USER nonroot
# 8080: the API (KEYSD_HTTP_ADDR); 9090: /metrics when KEYSD_METRICS_ADDR is set.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/keysd"]
