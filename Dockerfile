# dovetaild on Debian 12, built the same way as on a developer machine (scripts/deps.sh + make).
FROM debian:12
WORKDIR /src
COPY . .
RUN ./scripts/deps.sh && make BUILD=/build all demo && \
    install -m 0755 /build/dovetaild /build/dovetail /usr/local/bin/ && \
    mkdir -p /data && cp /build/demo/*.jsonl /build/demo/clusters.tsv /data/
EXPOSE 8080
# Every flag can also be set through the environment (DOVETAIL_*; see dovetaild --help).
# Listening on 0.0.0.0 needs --auth-file (DOVETAIL_AUTH_FILE): docker-compose.yml mounts one as a
# secret; with plain `docker run`, mount a file from scripts/gen_auth.sh and set the variable.
ENTRYPOINT ["/usr/local/bin/dovetaild"]
CMD ["--listen", "0.0.0.0:8080", "--achievements", "/data/achievements.jsonl", \
     "--demands", "/data/demands.jsonl", "--clusters", "/data/clusters.tsv"]
