"""The registry of pretrained files, import into the hub cache, and the CLI around it."""

from __future__ import annotations

import hashlib

import pytest
import torch

from artlab import weights
from artlab.cli import main


def test_known_files_cover_every_pretrained_backbone():
    names = {f.filename for f in weights.known_files()}
    assert {"vgg16-397923af.pth", "vgg19-dcbb9e9d.pth", "resnet50-0676ba61.pth", "resnet152-394f9c45.pth"} <= names
    vgg19 = weights.find_known("vgg19-dcbb9e9d.pth")
    assert vgg19.sha256_prefix == "dcbb9e9d" and vgg19.size_mb > 500


def test_cache_dir_follows_torch_home(hub_cache):
    assert weights.cache_dir() == hub_cache


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
    monkeypatch.setitem(weights._EXTRA, known.key, known)
    renamed = tmp_path / "whatever-the-browser-called-it.pth"
    payload.rename(renamed)
    dest = weights.import_file(renamed)  # identified by hash, stored under the official name
    assert dest == hub_cache / known.filename and dest.read_bytes() == renamed.read_bytes()
    assert weights.cached_path(known) == dest
    assert weights.import_file(renamed) == dest  # idempotent


def test_import_refuses_a_corrupt_download(tmp_path, hub_cache):
    bad = tmp_path / "vgg19-dcbb9e9d.pth"
    bad.write_bytes(b"not really the weights")
    with pytest.raises(weights.WeightsError, match="must start with dcbb9e9d.*incomplete or corrupt"):
        weights.import_file(bad)
    assert not (hub_cache / bad.name).exists()


def test_import_refuses_an_unknown_file(tmp_path, hub_cache):
    other = tmp_path / "holiday.jpg"
    other.write_bytes(b"\xff\xd8 something")
    with pytest.raises(weights.WeightsError, match="not a pretrained file artlab knows"):
        weights.import_file(other)


def test_downloads_can_be_disabled(hub_cache, monkeypatch):
    monkeypatch.setenv("ARTLAB_OFFLINE", "1")
    with pytest.raises(weights.WeightsNotFoundError, match="ARTLAB_OFFLINE"):
        weights.download(weights.find_known("vgg16"))


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
