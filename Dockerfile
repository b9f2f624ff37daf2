# regate in a container: `docker build -t regate .`
# Run: docker run -p 8080:8080 -v regate-state:/var/lib/regate regate \
#        serve --listen 0.0.0.0:8080 --upstream http://registry:5000
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin regate

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/regate --create-home regate
COPY --from=build /src/target/release/regate /usr/local/bin/regate
COPY config/regate.yaml /etc/regate/regate.yaml
USER regate
ENV REGATE_STATE=/var/lib/regate
EXPOSE 8080
ENTRYPOINT ["regate"]
CMD ["serve", "--config", "/etc/regate/regate.yaml", "--listen", "0.0.0.0:8080"]
