"""Embedded weights as verified data: pieces found through package metadata, joined in order, checked piece by piece
and whole; a wrong, short or missing piece is one line naming its package, the pinned hash and the fix; two first
runs at once build the folder once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from selflen import embedded
from selflen.embedded import EmbeddedModel, Piece, WeightsError, join_verified, locate

pytestmark = pytest.mark.unit
CHUNKS = [b"GGUF" + bytes(range(256)) * 40, bytes(reversed(range(256))) * 33, b"tail of the model" * 7]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_site(root: Path, chunks: list[bytes] = CHUNKS, version: str = "1.0") -> Path:
    """A site-packages folder holding one installed distribution ``fake-part<i>`` per chunk, with no code at all:
    the dist-info metadata and ``fake_part<i>/data/partNN.bin``."""
    for i, chunk in enumerate(chunks, start=1):
        info = root / f"fake_part{i}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-part{i}\nVersion: {version}\n")
        data = root / f"fake_part{i}" / "data"
        data.mkdir(parents=True)
        (data / f"part{i:02d}.bin").write_bytes(chunk)
    return root


def fake_model(chunks: list[bytes] = CHUNKS, version: str = "1.0") -> EmbeddedModel:
    pieces = tuple(
        Piece(f"fake-part{i}", version, "0" * 64, f"fake_part{i}/data/part{i:02d}.bin", len(c), _sha(c))
        for i, c in enumerate(chunks, start=1)
    )
    whole = b"".join(chunks)
    return EmbeddedModel("fake", "test/Fake-Instruct", pieces, len(whole), _sha(whole), "Apache-2.0", "a test",
                         ("<|im_end|>",))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = fake_site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    return root


def test_pieces_are_found_by_metadata_and_joined_in_order(site: Path, tmp_path: Path) -> None:
    model = fake_model()
    assert locate(model.pieces[1], model) == site / "fake_part2" / "data" / "part02.bin"
    out = join_verified(model, tmp_path / "out" / "model.gguf")
    assert out.read_bytes() == b"".join(CHUNKS)


def test_a_corrupt_piece_names_its_package_the_pinned_hash_and_the_fix(site: Path, tmp_path: Path) -> None:
    model = fake_model()
    bad = site / "fake_part2" / "data" / "part02.bin"
    bad.write_bytes(b"X" + bad.read_bytes()[1:])  # same size, one byte changed
    dest = tmp_path / "model.gguf"
    with pytest.raises(WeightsError) as err:
        join_verified(model, dest)
    msg = str(err.value)
    assert "\n" not in msg and "fake-part2==1.0" in msg and model.pieces[1].sha256 in msg
    assert "python -m selflen.embedded install fake --force" in msg
    assert not dest.exists(), "a failed join must not leave a half-written GGUF"


def test_a_short_piece_says_how_short(site: Path, tmp_path: Path) -> None:
    model = fake_model()
    short = site / "fake_part3" / "data" / "part03.bin"
    short.write_bytes(short.read_bytes()[:-5])
    with pytest.raises(WeightsError, match=rf"fake-part3==1.0 is corrupt \({len(CHUNKS[2]) - 5} bytes, pinned "):
        join_verified(model, tmp_path / "model.gguf")


def test_a_missing_package_or_file_or_another_version_stops_with_the_install_command(
    site: Path, tmp_path: Path
) -> None:
    import shutil

    model = fake_model()
    shutil.rmtree(site / "fake_part1")  # the data is gone, the metadata is left
    with pytest.raises(WeightsError, match=r"fake-part1==1.0 lacks fake_part1/data/part01.bin"):
        join_verified(model, tmp_path / "a.gguf")
    shutil.rmtree(site / "fake_part1-1.0.dist-info")
    with pytest.raises(WeightsError, match=r"fake-part1==1.0 .* is not installed; run `python -m selflen.embedded "
                                           r"install fake`"):
        join_verified(model, tmp_path / "b.gguf")
    other = fake_model(version="2.0")
    with pytest.raises(WeightsError, match=r"package fake-part2 is 1.0, pinned 2.0"):
        locate(other.pieces[1], other)


def test_the_whole_file_is_checked_even_when_every_piece_matches(tmp_path: Path) -> None:
    """Pieces in the wrong order each match their own pin only if the pins are swapped too; the whole hash catches a
    registry whose pieces were listed out of order."""
    paths = []
    for i, chunk in enumerate(CHUNKS):
        paths.append(tmp_path / f"p{i}")
        paths[-1].write_bytes(chunk)
    model = fake_model()
    swapped = EmbeddedModel(model.key, model.name, (model.pieces[1], model.pieces[0], model.pieces[2]), model.size,
                            model.sha256, model.licence, model.provenance, model.stop_tokens)
    with pytest.raises(WeightsError, match="the joined GGUF does not match its pin"):
        join_verified(swapped, tmp_path / "model.gguf", [paths[1], paths[0], paths[2]])


def test_the_registry_pins_are_consistent() -> None:
    """Every registered model: the pieces add up to the whole, every hash is 64 hex digits, files and packages are
    distinct, and the requirements pin each wheel by version and hash."""
    for key, model in embedded.EMBEDDED.items():
        assert model.key == key
        assert sum(p.size for p in model.pieces) == model.size
        hashes = [model.sha256, *(p.sha256 for p in model.pieces), *(p.wheel_sha256 for p in model.pieces)]
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
        assert len({p.package for p in model.pieces}) == len({p.file for p in model.pieces}) == len(model.pieces)
        lines = model.requirements().splitlines()
        assert lines == [f"{p.package}=={p.version} --hash=sha256:{p.wheel_sha256}" for p in model.pieces]
    assert embedded.hashed_path("embedded", embedded.DEFAULT_EMBEDDED) is None  # old runs keep their hashes
    assert embedded.hashed_path("embedded", "qwen25_coder_05b") == "qwen25_coder_05b"


def test_an_unknown_key_names_the_choices() -> None:
    with pytest.raises(WeightsError, match="model.path='nope' names no embedded model; choose one of smollm2_135m"):
        embedded.lookup("nope")


def test_the_cli_verifies_and_reports_one_line(site: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(embedded.EMBEDDED, "fake", fake_model())
    assert embedded.main(["verify", "fake"]) == 0
    assert "fake: 3 piece(s) match their pins" in capsys.readouterr().out
    (site / "fake_part1" / "data" / "part01.bin").write_bytes(b"nope")
    assert embedded.main(["verify", "fake"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("selflen: error: fake: ") and "\n" not in err


FIRST_USE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from selflen import embedded, models
    sys.path.insert(0, {test_dir!r})
    from test_embedded import fake_model

    embedded.EMBEDDED["fake"] = fake_model()

    def convert(out_dir, key):  # the real join and verify; the transformers part is replaced by a marker file
        gguf = embedded.join_verified(embedded.lookup(key), Path(out_dir) / "model.gguf")
        with open({builds!r}, "a") as f:
            f.write("build\\n")
        time.sleep(1.0)  # hold the lock long enough for the other process to arrive
        (Path(out_dir) / "config.json").write_text(json.dumps({{"size": gguf.stat().st_size}}))

    models.convert_embedded = convert
    print(models.embedded_model_dir({cache!r}, "fake"))
    """
)


def test_two_processes_on_first_use_build_once_and_agree(site: Path, tmp_path: Path) -> None:
    builds, cache = tmp_path / "builds.log", tmp_path / "cache"
    script = FIRST_USE.format(test_dir=str(Path(__file__).parent), builds=str(builds), cache=str(cache))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1 and builds.read_text() == "build\n"
    folder = Path(folders.pop())
    assert folder.name.startswith("fake-") and (folder / "model.gguf").read_bytes() == b"".join(CHUNKS)
    assert not list(cache.glob("*.tmp-*")), "no temporary folder is left behind"
