# The operator image. The sandbox never builds it (no container runtime there); clusters run it
# through the Helm chart in charts/vigil.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --no-create-home vigil
USER 10001
EXPOSE 8080 9102
ENTRYPOINT ["vigil", "run"]
CMD ["--all-namespaces", "--liveness", "http://0.0.0.0:8080/healthz"]
