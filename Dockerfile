# regate's container image. No base image is pulled: deploy/image/build.sh assembles the root
# filesystem (the binary, the libraries it links, CA certificates, passwd) in
# target/image/rootfs, then runs `docker build`; build the image with that script:
#   deploy/image/build.sh --tag regate:latest
# Run:
#   docker run -p 8080:8080 -v regate-state:/var/lib/regate regate:latest \
#     serve --config /etc/regate/regate.yaml --listen 0.0.0.0:8080 --upstream http://registry:5000
FROM scratch
COPY target/image/rootfs/ /
# The state directory belongs to the non-root user; a new named volume mounted there inherits it.
COPY --chown=10001:10001 target/image/state /var/lib/regate
USER 10001:10001
ENV REGATE_STATE=/var/lib/regate \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
EXPOSE 8080 8443
ENTRYPOINT ["/usr/local/bin/regate"]
CMD ["serve", "--config", "/etc/regate/regate.yaml", "--listen", "0.0.0.0:8080"]
