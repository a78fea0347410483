"""Span-to-rectangle mapping and the compact box storage, on hand-made pages."""

from __future__ import annotations

from array import array

import pytest

from rlm_desktop.store.pages import (
    Page,
    pack_boxes,
    page_for_offset,
    span_rects,
    unpack_boxes,
    unpack_first_format,
)

# "alpha beta\ngamma" on page 1, then "\f", then "delta" on page 2
PAGES = [
    Page(1, 0, 16, 600, 800, [(0, 5, 10, 10, 40, 20), (6, 10, 45, 10, 70, 20), (11, 16, 10, 30, 45, 40)]),
    Page(2, 17, 22, 600, 800, [(17, 22, 10, 10, 40, 20)]),
]


def test_words_on_one_line_merge_and_lines_stay_apart():
    assert span_rects(PAGES, 0, 10) == [(1, [10, 10, 70, 20])]
    assert span_rects(PAGES, 2, 13) == [(1, [10, 10, 70, 20]), (1, [10, 30, 45, 40])]


def test_a_span_across_a_page_break():
    assert span_rects(PAGES, 11, 22) == [(1, [10, 30, 45, 40]), (2, [10, 10, 40, 20])]
    assert span_rects(PAGES, 5, 5) == []


def test_page_for_offset():
    assert [page_for_offset(PAGES, o) for o in (0, 15, 16, 17, 21, 99)] == [1, 1, None, 2, 2, None]


def test_packing_round_trips_as_float32():
    boxes = [(0, 5, 10.25, 10.5, 40.0, 20.75), (2_000_000, 2_000_009, 0.1, 0.2, 599.9, 799.9), (7, 9, -3.3, -1, 0, 0)]
    back = unpack_boxes(pack_boxes(boxes))
    assert [b[:2] for b in back] == [(0, 5), (2_000_000, 2_000_009), (7, 9)]
    assert all(
        a == pytest.approx(b, abs=1e-3)
        for x, y in zip(boxes, back, strict=True)
        for a, b in zip(x, y, strict=True)
    )
    assert unpack_boxes(pack_boxes([])) == []
    with pytest.raises(ValueError):
        pack_boxes([(0, 1, 2, 3, 4)])
    with pytest.raises(ValueError):
        pack_boxes([(0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4)])
    with pytest.raises(ValueError):
        unpack_boxes(b"\x00" * 25)


def test_a_page_of_words_packs_in_a_third_of_the_room():
    # 40 lines of 12 words, as a text layer has them: same height on a line, words a few points apart
    boxes, at = [], 0
    for line in range(40):
        x = 72.0
        for word in range(12):
            width = 18.37 + (word * 7 % 5) * 4.11
            boxes.append((at, at + 5 + word % 4, x, 90.5 + line * 14.2, x + width, 90.5 + line * 14.2 + 11.04))
            at += 6 + word % 4
            x += width + 3.1
    data = pack_boxes(boxes)
    assert len(data) < 10 * len(boxes)  # the first format took 24 bytes a word
    back = unpack_boxes(data)
    assert [b[:2] for b in back] == [b[:2] for b in boxes]
    assert all(a == pytest.approx(b, abs=1e-3) for x, y in zip(boxes, back, strict=True) for a, b in zip(x, y, strict=True))


def test_boxes_in_the_first_format_still_read():
    boxes = [(0, 5, 10.25, 10.5, 40.0, 20.75), (2, 9, 0.5, 0.25, 599.75, 799.5)]
    columns = list(zip(*boxes, strict=True))
    first = b"".join(
        array(code, column).tobytes() for code, column in zip("iiffff", columns, strict=True)
    )  # 24 bytes a word, no header: what cases before migration m008 hold
    assert unpack_first_format(first) == boxes
    assert unpack_boxes(first) == boxes


def test_three_lines_give_three_rectangles_and_columns_never_merge():
    # line 1 "a b" / line 2 "c" / line 3 "d", and a right-hand column word "x" at the height of line 1
    page = Page(
        1,
        0,
        11,
        600,
        800,
        [
            (0, 1, 10, 10, 20, 20),
            (2, 3, 25, 10, 35, 20),
            (4, 5, 10, 30, 20, 40),
            (6, 7, 10, 50, 20, 60),
            (10, 11, 400, 10, 410, 20),
        ],
    )
    assert span_rects([page], 0, 7) == [(1, [10, 10, 35, 20]), (1, [10, 30, 20, 40]), (1, [10, 50, 20, 60])]
    assert span_rects([page], 2, 11)[-1] == (1, [400, 10, 410, 20])  # a far jump is a new rectangle
    assert span_rects([page], 6, 11) == [(1, [10, 50, 20, 60]), (1, [400, 10, 410, 20])]


def test_a_span_touching_part_of_a_word_covers_the_whole_word():
    assert span_rects(PAGES, 1, 2) == [(1, [10, 10, 40, 20])]
    assert span_rects(PAGES, 5, 6) == []  # only the space between two words
