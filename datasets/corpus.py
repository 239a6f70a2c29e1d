"""The score corpus shipped inside ``music21``: which pieces there are, their names and their train/test split.

The split is by piece and depends only on the piece's corpus name and the test fraction (a SHA-256 of the name),
never on the seed or on how many pieces are built, so a test piece never lands in training. Pieces of the corpus
known to share their melody (the same chorale tune stored twice) are split as one piece.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from pathlib import Path
from typing import Sequence

from core.errors import UserError

DEFAULT_COMPOSERS = ("bach", "beethoven", "haydn", "mozart")

#: Score formats taken from the corpus, best first: when a piece exists in two formats (bwv281.krn and
#: bwv281.mxl), only the first one in this order is used. Roman-numeral analyses (.rntxt) are not scores.
SCORE_EXTENSIONS = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi")

#: Pieces of music21's corpus (v10.5) whose melody (part 1, transposition-invariant pitch sequence) is the same
#: as another piece's: the same chorale tune harmonised twice, or one file stored twice. Each group is split
#: as one piece (by the hash of its first name), so the same violin line never appears in both splits.
SAME_MELODY_GROUPS = (
    ("bach/bwv114.7", "bach/bwv258"), ("bach/bwv117.4", "bach/bwv177.4"), ("bach/bwv120.8-a", "bach/bwv137.5"),
    ("bach/bwv144.6", "bach/bwv65.7"), ("bach/bwv158.4", "bach/bwv279"), ("bach/bwv175.7", "bach/bwv59.3"),
    ("bach/bwv18.5-lz", "bach/bwv18.5-w"), ("bach/bwv194.6", "bach/bwv39.7"), ("bach/bwv197.7-a", "bach/bwv398"),
    ("bach/bwv244.15", "bach/bwv244.44"), ("bach/bwv244.54", "bach/bwv270"), ("bach/bwv245.26", "bach/bwv415"),
    ("bach/bwv274", "bach/bwv62.6"), ("bach/bwv277", "bach/bwv4.8"), ("bach/bwv326", "bach/bwv327"),
    ("bach/bwv421", "bach/bwv47.5"),
)
_SPLIT_KEY = {name: group[0] for group in SAME_MELODY_GROUPS for name in group}

#: Corpus folders whose abc files number their tunes across the whole collection: ``X:`` is the tune's number in
#: the printed book (O'Neill's "Music of Ireland", 1850), and files overlap (the same tunes transcribed twice, e.g.
#: ``0732-0758_bs.abc`` and ``0732-0758_mh.abc``). A tune is keyed by that number (``"oneills1850/732"``) and
#: taken from the first file holding it, so a tune stored twice is one piece. In other folders an abc file's
#: numbers are its own (essenFolksong restarts at 1 in every file): the key is ``"<file key>/<number>"``.
NUMBERED_COLLECTIONS = ("oneills1850",)

_TUNE_NUMBER = re.compile(r"^X:[ \t]*(\d+)", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class CorpusPiece:
    """One score of music21's corpus.

    Attributes:
        key: corpus path without extension, e.g. ``"bach/bwv66.6"`` (what ``music21.corpus.parse`` accepts).
        corpus_path: corpus path with extension, e.g. ``"bach/bwv66.6.mxl"``.
        path: the file on disk.
        number: for one tune of an abc file holding several (a collection), its ``X:`` number (what
            ``music21.converter.parse(path, number=...)`` takes); None for a file holding one score. Such a
            tune's key is ``"<collection>/<number>"`` or ``"<file key>/<number>"`` (see
            :data:`NUMBERED_COLLECTIONS`) and its corpus_path ``"<file>#<number>"``.
    """

    key: str
    corpus_path: str
    path: Path
    number: int | None = None

    @property
    def name(self) -> str:
        """File-system name of the piece, e.g. ``"bach_bwv66.6"`` (folder and tfrecord names)."""
        return piece_name(self.key)

    @property
    def composer(self) -> str:
        return self.key.split("/", 1)[0]


def piece_name(key: str) -> str:
    """``"beethoven/opus59no1/movement1"`` -> ``"beethoven_opus59no1_movement1"`` (only ``[A-Za-z0-9._-]``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key.replace("/", "_"))


def tune_numbers(path: str | Path) -> list[int]:
    """The ``X:`` reference numbers of an abc file, in file order, each once (one tune per number)."""
    text = Path(path).read_text(encoding="latin-1")
    return list(dict.fromkeys(int(n) for n in _TUNE_NUMBER.findall(text)))


def list_corpus_pieces(composers: Sequence[str]) -> list[CorpusPiece]:
    """The scores of ``composers`` in music21's corpus, one per piece, sorted by key.

    A piece stored in two formats is listed once (see :data:`SCORE_EXTENSIONS`); analyses (.rntxt) are left out.
    An abc file holding several tunes (a collection such as oneills1850 or essenFolksong) is listed as one piece
    per tune (see :class:`CorpusPiece` and :data:`NUMBERED_COLLECTIONS`).

    Raises:
        UserError: a composer has no score in the corpus.
    """
    from music21 import common, corpus

    root = Path(common.getCorpusFilePath())
    by_key: dict[str, CorpusPiece] = {}
    for composer in composers:
        paths = sorted(Path(p) for p in corpus.getComposer(composer) if Path(p).suffix.lower() in SCORE_EXTENSIONS)
        if not paths:
            raise UserError(f"music21's corpus has no scores by {composer!r}; try e.g. "
                            f"--composers {' '.join(DEFAULT_COMPOSERS)}")
        for path in paths:
            try:
                relative = path.relative_to(root).as_posix()
            except ValueError:       # a corpus registered outside the core one
                relative = f"{composer}/{path.name}"
            key = relative.rsplit(".", 1)[0]
            numbers = tune_numbers(path) if path.suffix.lower() == ".abc" else []
            if len(numbers) > 1 or (numbers and composer in NUMBERED_COLLECTIONS):
                for number in numbers:
                    tune_key = f"{composer}/{number}" if composer in NUMBERED_COLLECTIONS else f"{key}/{number}"
                    by_key.setdefault(tune_key, CorpusPiece(tune_key, f"{relative}#{number}", path, number))
                continue
            old = by_key.get(key)
            rank = SCORE_EXTENSIONS.index(path.suffix.lower())
            if old is None or rank < SCORE_EXTENSIONS.index(old.path.suffix.lower()):
                by_key[key] = CorpusPiece(key, relative, path)
    return [by_key[k] for k in sorted(by_key)]


def find_corpus_pieces(keys: Sequence[str]) -> list[CorpusPiece]:
    """Look up pieces by corpus key (``"bach/bwv66.6"``, with or without extension), in the given order.

    Raises:
        UserError: a key is not in the corpus.
    """
    wanted_composers = sorted({k.split("/", 1)[0] for k in keys})
    available = {}
    for composer in wanted_composers:
        try:
            available.update({p.key: p for p in list_corpus_pieces([composer])})
        except UserError:
            pass
    pieces = []
    for key in keys:
        stem = key.rsplit(".", 1)[0] if Path(key).suffix.lower() in SCORE_EXTENSIONS else key
        if stem not in available:
            raise UserError(f"{key!r} is not a score in music21's corpus (give e.g. bach/bwv66.6)")
        pieces.append(available[stem])
    return pieces


def split_of(key: str, test_fraction: float) -> str:
    """The split of a piece: ``"test"`` when a stable hash of its corpus key is below ``test_fraction``.

    The hash is SHA-256 of the key (or of the first key of its :data:`SAME_MELODY_GROUPS` group) read as a
    number in [0, 1): the split never depends on the seed, on the order or number of pieces built, or on the
    Python process, and raising ``test_fraction`` only moves pieces from train to test.

    Args:
        key: corpus key without extension, e.g. ``"bach/bwv66.6"``.
        test_fraction: in [0, 1].
    Returns:
        "train" or "test".
    """
    key = _SPLIT_KEY.get(key, key)
    digest = hashlib.sha256(f"music21-duo-split:{key}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    return "test" if u < test_fraction else "train"


def visit_order(pieces: Sequence[CorpusPiece], seed: int) -> list[CorpusPiece]:
    """The pieces in the order a build visits them: sorted by key, then shuffled by ``random.Random(seed)``."""
    order = sorted(pieces, key=lambda p: p.key)
    random.Random(seed).shuffle(order)
    return order


def parse_composer_minutes(items) -> tuple[tuple[str, float], ...]:
    """``["bach=60", ...]`` -> ``(("bach", 60.0), ...)``: the per-composer caps of a build, in minutes.

    Raises:
        UserError: an item that is not NAME=MINUTES with MINUTES >= 0.
    """
    caps = []
    for item in items:
        name, sep, minutes = item.partition("=")
        try:
            value = float(minutes)
        except ValueError:
            value = None
        if not sep or not name or value is None or value < 0:
            raise UserError(f"--composer_minutes {item!r} is not NAME=MINUTES (e.g. bach=60)")
        caps.append((name, value))
    return tuple(caps)
