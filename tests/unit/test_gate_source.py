"""Golden sets in the model repository: where ``spec.validation.goldenSet.path`` points for each
repository scheme, which local files the operator may read, and how reading one fails (named, never raised)."""

from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

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
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/repo"
    finally:
        await runner.cleanup()


async def test_a_golden_set_is_fetched_from_an_http_repository(http_repository: str) -> None:
    assert await read(http_repository, "golden.json", []) == b'{"served": true}'


async def test_http_errors_timeouts_and_oversized_bodies_are_named(http_repository: str) -> None:
    assert (await refused(http_repository, "missing.json", [])).endswith("cnn/missing.json: HTTP 404 Not Found")
    timed_out = await refused(http_repository, "slow.json", [], seconds=0.2)
    assert "not read within 0.2s (spec.validation.timeout)" in timed_out
    assert "over the 4096 bytes the operator reads" in await refused(http_repository, "endless.json", [], limit=4096)
    assert "golden.json: " in await refused("http://127.0.0.1:9", "golden.json", [])
