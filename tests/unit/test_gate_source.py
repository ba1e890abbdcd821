"""Golden sets in the model repository: where ``spec.validation.goldenSet.path`` points for each
repository scheme, which local files the operator may read, and how reading one fails (named, never raised)."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.unit import gatekit
from vigil.gate import source
from vigil.reconcile import repository


@pytest.mark.parametrize(
    ("repository_uri", "path", "access", "target"),
    [
        ("/models", "golden.json", source.Access.LOCAL, "/models/cnn/golden.json"),
        ("/models/", "3/golden.json", source.Access.LOCAL, "/models/cnn/3/golden.json"),
        ("file:///mnt/models", "golden.json", source.Access.LOCAL, "/mnt/models/cnn/golden.json"),
        ("file://localhost/mnt/models", "golden.json", source.Access.LOCAL, "/mnt/models/cnn/golden.json"),
        ("file:///mnt/my%20models", "golden.json", source.Access.LOCAL, "/mnt/my models/cnn/golden.json"),
        (
            "http://models.internal:8080",
            "golden.json",
            source.Access.HTTP,
            "http://models.internal:8080/cnn/golden.json",
        ),
        ("https://host/repo/", "3/golden.json", source.Access.HTTP, "https://host/repo/cnn/3/golden.json"),
        ("https://host/repo?sig=abc", "golden.json", source.Access.HTTP, "https://host/repo/cnn/golden.json?sig=abc"),
    ],
)
def test_the_path_is_relative_to_the_models_directory_in_the_repository(
    repository_uri: str, path: str, access: source.Access, target: str
) -> None:
    found = source.locate(repository_uri, "cnn", path)
    assert (found.access, found.target) == (access, target)
    assert found.where == f"spec.validation.goldenSet.path: {target}"


@pytest.mark.parametrize("repository_uri", ["s3://bucket/models", "gs://bucket/models", "as://account/container"])
def test_cloud_repositories_are_unsupported_naming_the_field_and_the_schemes_that_work(repository_uri: str) -> None:
    found = source.locate(repository_uri, "cnn", "golden.json")
    assert found.access is source.Access.UNSUPPORTED
    scheme = repository_uri.split("://")[0]
    assert found.problem.startswith(f"spec.validation.goldenSet.path: the operator cannot read {scheme}:// ")
    assert "file://" in found.problem
    assert "http(s)://" in found.problem
    assert "spec.validation.goldenSet.configMapRef" in found.problem


def test_a_file_uri_with_a_remote_host_is_not_a_local_path() -> None:
    found = source.locate("file://nfs-server/models", "cnn", "golden.json")
    assert found.access is source.Access.UNSUPPORTED
    assert "nfs-server" in found.problem


@pytest.mark.parametrize(
    ("resolved", "roots", "allowed"),
    [
        ("/models/cnn/golden.json", ["/models"], True),
        ("/models/cnn/golden.json", ["/models/"], True),
        ("/models-other/cnn/golden.json", ["/models"], False),
        ("/etc/passwd", ["/models", "/data"], False),
        ("/data/x", ["/models", "/data"], True),
        ("/anything", ["/"], True),
        ("/models/cnn/golden.json", [], False),
    ],
)
def test_only_files_under_a_mounted_repository_may_be_read(resolved: str, roots: list[str], allowed: bool) -> None:
    refused = source.mounted(resolved, roots)
    assert (refused is None) is allowed
    if not roots:
        assert refused is not None
        assert "no model repository is mounted into the operator" in refused
        assert "--model-repository-root" in refused


# -- reading (the edge) ------------------------------------------------------------------------------


@pytest.fixture
def models(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "models"
    (root / "cnn" / "1").mkdir(parents=True)
    (root / "cnn" / "golden.json").write_text('{"format": "vigil.dev/golden-set/v1"}')
    return root


async def read(
    repository_uri: str, path: str, roots: list[str], limit: int = source.MAX_BYTES, seconds: float = 2.0
) -> bytes:
    return await repository.read(source.locate(repository_uri, "cnn", path), roots, seconds, limit)


async def refused(
    repository_uri: str, path: str, roots: list[str], limit: int = source.MAX_BYTES, seconds: float = 2.0
) -> str:
    with pytest.raises(source.UnreadableError) as raised:
        await read(repository_uri, path, roots, limit, seconds)
    message = str(raised.value)
    assert message.startswith("spec.validation.goldenSet.path: ")
    return message


async def test_a_golden_set_is_read_from_a_mounted_local_repository(models: pathlib.Path) -> None:
    expected = (models / "cnn" / "golden.json").read_bytes()
    assert await read(str(models), "golden.json", [str(models)]) == expected
    assert await read(f"file://{models}", "golden.json", [str(models.parent)]) == expected


async def test_a_local_repository_the_operator_does_not_mount_is_refused(models: pathlib.Path) -> None:
    message = await refused(str(models), "golden.json", [])
    assert "no model repository is mounted into the operator" in message
    message = await refused(str(models), "golden.json", [str(models / "other")])
    assert "not under a model repository mounted into the operator" in message


async def test_a_symlink_out_of_the_mounted_repository_is_refused(models: pathlib.Path, tmp_path: pathlib.Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (models / "cnn" / "escape.json").symlink_to(secret)
    assert "not under a model repository" in await refused(str(models), "escape.json", [str(models)])


async def test_missing_files_directories_and_oversized_files_are_named(models: pathlib.Path) -> None:
    roots = [str(models)]
    missing = await refused(str(models), "2/golden.json", roots)
    assert (
        missing == f"spec.validation.goldenSet.path: {models}/cnn/2/golden.json: no such file in the model repository"
    )
    assert "a directory, not a golden-set file" in await refused(str(models), "1", roots)
    assert "over the 10 bytes the operator reads" in await refused(str(models), "golden.json", roots, limit=10)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
async def test_an_unreadable_file_is_named_with_the_operators_uid(models: pathlib.Path) -> None:
    (models / "cnn" / "golden.json").chmod(0)
    assert "permission denied to the operator" in await refused(str(models), "golden.json", [str(models)])


async def test_a_cloud_repository_is_never_read(models: pathlib.Path) -> None:
    message = await refused("s3://bucket/models", "golden.json", [str(models)])
    assert "cannot read s3:// model repositories" in message


@pytest.fixture
async def http_repository() -> AsyncIterator[str]:
    """A model repository over HTTP: /repo/cnn/golden.json, a slow file, a huge chunked one."""

    async def golden(_: web.Request) -> web.Response:
        return web.Response(body=b'{"served": true}')

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(body=b"{}")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b"x" * 1024)
        return response

    app = web.Application()
    app.router.add_get("/repo/cnn/golden.json", golden)
    app.router.add_get("/repo/cnn/slow.json", slow)
    app.router.add_get("/repo/cnn/endless.json", endless)
    async for served in gatekit.serve_app(app):
        yield f"http://{served}/repo"


async def test_a_golden_set_is_fetched_from_an_http_repository(http_repository: str) -> None:
    assert await read(http_repository, "golden.json", []) == b'{"served": true}'


async def test_http_errors_timeouts_and_oversized_bodies_are_named(http_repository: str) -> None:
    assert (await refused(http_repository, "missing.json", [])).endswith("cnn/missing.json: HTTP 404 Not Found")
    timed_out = await refused(http_repository, "slow.json", [], seconds=0.2)
    assert "not read within 0.2s (spec.validation.timeout)" in timed_out
    assert "over the 4096 bytes the operator reads" in await refused(http_repository, "endless.json", [], limit=4096)
    assert "golden.json: " in await refused("http://127.0.0.1:9", "golden.json", [])


# -- kept between validation attempts ----------------------------------------------------------------


class Parses:
    """A parse function that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes) -> bytes:
        self.calls += 1
        return data.upper()


async def test_an_unchanged_local_golden_set_is_neither_read_nor_parsed_again(models: pathlib.Path) -> None:
    files = repository.Files([str(models)])
    location = source.locate(str(models), "cnn", "golden.json")
    parse = Parses()
    first = await files.parsed(location, 2.0, parse)
    assert await files.parsed(location, 2.0, parse) is first
    assert (files.reads, parse.calls) == (1, 1)
    golden = models / "cnn" / "golden.json"
    golden.write_text('{"format": "vigil.dev/golden-set/v1", "changed": true}')
    os.utime(golden, ns=(golden.stat().st_atime_ns, golden.stat().st_mtime_ns + 1_000_000_000))
    assert b'"CHANGED": TRUE' in await files.parsed(location, 2.0, parse)
    assert (files.reads, parse.calls) == (2, 2)


async def test_a_golden_set_that_disappears_is_dropped_and_named(models: pathlib.Path) -> None:
    files = repository.Files([str(models)])
    location = source.locate(str(models), "cnn", "golden.json")
    await files.read(location, 2.0)
    (models / "cnn" / "golden.json").unlink()
    with pytest.raises(source.UnreadableError, match="no such file in the model repository"):
        await files.read(location, 2.0)
    assert files.kept() == []


async def test_the_least_recently_used_golden_set_leaves_first_beyond_the_budget(models: pathlib.Path) -> None:
    for name in ("a", "b", "c"):
        (models / "cnn" / f"{name}.json").write_bytes(b"x" * 400)
    files = repository.Files([str(models)], budget=1000)
    where = {name: source.locate(str(models), "cnn", f"{name}.json") for name in ("a", "b", "c")}
    await files.read(where["a"], 2.0)
    await files.read(where["b"], 2.0)
    await files.read(where["a"], 2.0)  # a is used again: b is now the oldest
    await files.read(where["c"], 2.0)
    assert files.kept() == [where["a"].target, where["c"].target]
    assert files.reads == 3


@pytest.fixture
async def validating_server() -> AsyncIterator[tuple[str, list[dict[str, str]], dict[str, bytes]]]:
    """/repo/cnn/<name>: the body in ``bodies``, with an ETag (and 304 to a matching If-None-Match);
    /repo/cnn/plain.json: no validators. Each request's conditional headers are recorded."""
    seen: list[dict[str, str]] = []
    bodies = {"golden.json": b'{"v": 1}'}

    async def tagged(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items() if k.startswith("If-")})
        body = bodies[request.match_info["name"]]
        etag = f'"{len(body)}-{hash(body) & 0xFFFF}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag})

    async def plain(request: web.Request) -> web.Response:
        seen.append({k: v for k, v in request.headers.items() if k.startswith("If-")})
        return web.Response(body=b"{}")

    app = web.Application()
    app.router.add_get("/repo/cnn/plain.json", plain)
    app.router.add_get("/repo/cnn/{name}", tagged)
    async for served in gatekit.serve_app(app):
        yield f"http://{served}/repo", seen, bodies


async def test_an_http_golden_set_is_asked_for_again_conditionally_and_read_again_only_when_changed(
    validating_server: tuple[str, list[dict[str, str]], dict[str, bytes]],
) -> None:
    url, seen, bodies = validating_server
    files = repository.Files()
    location = source.locate(url, "cnn", "golden.json")
    parse = Parses()
    assert await files.parsed(location, 2.0, parse) == b'{"V": 1}'
    assert await files.parsed(location, 2.0, parse) == b'{"V": 1}'
    assert seen[0] == {}
    assert seen[1] == {"If-None-Match": f'"8-{hash(bodies["golden.json"]) & 0xFFFF}"'}  # answered 304
    assert (files.reads, parse.calls) == (1, 1)
    bodies["golden.json"] = b'{"v": 22}'
    assert await files.parsed(location, 2.0, parse) == b'{"V": 22}'
    assert (files.reads, parse.calls) == (2, 2)


async def test_an_http_golden_set_without_validators_is_read_every_time(
    validating_server: tuple[str, list[dict[str, str]], dict[str, bytes]],
) -> None:
    url, seen, _ = validating_server
    files = repository.Files()
    location = source.locate(url, "cnn", "plain.json")
    await files.read(location, 2.0)
    await files.read(location, 2.0)
    assert seen == [{}, {}]
    assert files.reads == 2
    assert files.kept() == []
