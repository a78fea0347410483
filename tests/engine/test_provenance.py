"""Provenance: source spans of prompts built the way root models build them, exact and near-complete."""

from __future__ import annotations

import random
import threading
import time

import pytest

from rlm_desktop.corpus import Corpus
from rlm_desktop.engine.provenance import Attributor, SourceSpan, attribute
from rlm_desktop.store.case import Case

CONTRACT = (
    "MASTER SERVICES AGREEMENT\n\n"
    '1. Parties. This agreement is made between Acme Holdings Ltd (the "Client") and Borealis\n'
    'Consulting GmbH (the "Contractor"), effective 1 March 2021.\n\n'
    "2. Fees. The Client shall pay the Contractor a monthly retainer of 12,500 USD, invoiced on the\n"
    "first business day of each month and payable within thirty (30) days of receipt.\n\n"
    "3. Termination. Either party may terminate this agreement with ninety days written notice;\n"
    "fees accrued before termination remain payable in full.\n"
)
EMAIL = (
    "From: dana@acme.example\nTo: legal@acme.example\nSubject: Borealis invoice dispute\n\n"
    "Hi team,\n\nBorealis sent invoice #4471 for 18,000 USD, well above the agreed retainer.\n"
    "I have asked their finance office to explain the difference before we pay anything.\n\n"
    "Regards,\nDana\n"
)
SPECIAL = (
    'The clause reads "NEAR(a b, 5)" literally -- not a query; see (x*y) AND OR NOT - minus.\n'
    "Wildcards like pay* and {braces} or [brackets] and col:umn must be harmless.\n"
)
GREEK = "Η σύμβαση υπογράφηκε στην Αθήνα στις 3 Μαρτίου 2021 από τον διευθυντή της εταιρείας.\n"
RUSSIAN = "Договор подписан в Москве третьего марта, оплата производится ежемесячно банковским переводом.\n"
JAPANESE = "本契約の報酬は月額三十万円とする。支払は翌月末日までに銀行振込により行うものとする。\n"
DUPLICATE = "This sentence appears verbatim in two different documents of the case file."


def build_case(path, texts: list[str]) -> tuple[Corpus, list[int]]:
    with Case.open(path) as case:
        ids = [case.add_text_document(f"doc{i}.txt", t) for i, t in enumerate(texts)]
        case.checkpoint()
    return Corpus.open(path), ids


@pytest.fixture
def small(tmp_path):
    texts = [CONTRACT, EMAIL, SPECIAL, GREEK + RUSSIAN + JAPANESE]
    corpus, ids = build_case(tmp_path / "case.sqlite", texts)
    return corpus, dict(zip(["contract", "email", "special", "foreign"], ids, strict=True))


class PromptBuilder:
    """Builds a prompt from pieces, remembering which characters came from which source span."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.sources: list[tuple[int, int, int, int]] = []  # prompt_start, prompt_end, doc_id, start
        self.model_written: list[tuple[int, int]] = []
        self.length = 0

    def say(self, text: str) -> PromptBuilder:
        self.model_written.append((self.length, self.length + len(text)))
        return self._add(text)

    def quote(self, corpus: Corpus, doc_id: int, start: int, end: int, transform=None) -> PromptBuilder:
        text = corpus.text_of(doc_id)[start:end]
        if transform is not None:
            text = transform(text)
        self.sources.append((self.length, self.length + len(text), doc_id, start))
        return self._add(text)

    def _add(self, text: str) -> PromptBuilder:
        self.parts.append(text)
        self.length += len(text)
        return self

    @property
    def prompt(self) -> str:
        return "".join(self.parts)


def assert_exact(spans: list[SourceSpan], prompt: str, corpus: Corpus) -> None:
    """Every span is in prompt order, disjoint, and names text equal to the prompt's (modulo whitespace)."""
    last_end = 0
    for span in spans:
        assert span.prompt_start >= last_end
        last_end = span.prompt_end
        source = corpus.text_of(span.doc_id)[span.start : span.end]
        quoted = prompt[span.prompt_start : span.prompt_end]
        if span.normalized:
            assert source.split() == quoted.split() and source != quoted
        else:
            assert source == quoted


def coverage(spans: list[SourceSpan], built: PromptBuilder) -> tuple[float, int]:
    """(share of source-derived characters attributed, characters attributed inside model-written text)."""
    attributed = bytearray(built.length)
    for span in spans:
        attributed[span.prompt_start : span.prompt_end] = b"\x01" * span.length
    source_chars = sum(e - s for s, e, _, _ in built.sources)
    covered = sum(sum(attributed[s:e]) for s, e, _, _ in built.sources)
    false = sum(sum(attributed[s:e]) for s, e in built.model_written)
    return covered / max(1, source_chars), false


def test_fstring_prompt_with_slices_of_several_documents(small):
    corpus, ids = small
    contract, email = corpus.text_of(ids["contract"]), corpus.text_of(ids["email"])
    fee_start = contract.index("2. Fees.")
    fee_end = contract.index("3. Termination")
    inv_start = email.index("Borealis sent")
    inv_end = email.index("\n\nRegards")
    prompt = (
        "You are checking invoices against the contract.\n"
        f"Contract excerpt:\n<<<{contract[fee_start:fee_end]}>>>\n"
        f"Email excerpt:\n<<<{email[inv_start:inv_end]}>>>\n"
        "Question: does the invoice match the agreed retainer? Answer yes or no with reasons."
    )
    spans = attribute(prompt, corpus)
    assert [(s.doc_id, s.start, s.end, s.normalized) for s in spans] == [
        (ids["contract"], fee_start, fee_end - 2, False),  # the slice's trailing "\n\n" is not claimed
        (ids["email"], inv_start, inv_end, False),
    ]
    assert_exact(spans, prompt, corpus)
    assert prompt[spans[0].prompt_start - 3 : spans[0].prompt_start] == "<<<"
    assert prompt[spans[1].prompt_end : spans[1].prompt_end + 3] == ">>>"


def test_joined_chunk_list_of_consecutive_paragraphs_is_one_span(small):
    corpus, ids = small
    contract = corpus.text_of(ids["contract"])
    paragraphs = contract.split("\n\n")
    prompt = "Summarise:\n" + "\n---\n".join(paragraphs[1:4]) + "\nEnd."
    spans = attribute(prompt, corpus)
    assert [s.doc_id for s in spans] == [ids["contract"]] * 3
    assert [contract[s.start : s.end] for s in spans] == [p.strip() for p in paragraphs[1:4]]
    # joined with the separator the text itself uses, the paragraphs are one contiguous span
    joined = "Summarise:\n" + "\n\n".join(paragraphs[1:3]) + "\nEnd."
    (span,) = attribute(joined, corpus)
    assert contract[span.start : span.end] == "\n\n".join(paragraphs[1:3])
    assert not span.normalized


@pytest.mark.parametrize(
    "transform",
    [lambda t: " ".join(t.split()), lambda t: t.replace("\n", " "), lambda t: t.replace("\n", "\r\n")],
    ids=["split-join", "replace-newline", "crlf"],
)
def test_whitespace_collapsed_excerpts_map_back_to_exact_offsets(small, transform):
    corpus, ids = small
    contract = corpus.text_of(ids["contract"])
    start, end = contract.index("1. Parties."), contract.index("fees accrued")
    built = (
        PromptBuilder().say("Who are the parties?\n\n").quote(corpus, ids["contract"], start, end, transform)
    )
    built.say("\n\nAnswer briefly.")
    spans = attribute(built.prompt, corpus)
    (span,) = spans
    assert (span.doc_id, span.start, span.normalized) == (ids["contract"], start, True)
    assert span.end == len(contract[:end].rstrip())
    assert_exact(spans, built.prompt, corpus)
    assert coverage(spans, built) == (pytest.approx(1.0, abs=0.01), 0)


def test_collapsed_runs_of_unequal_length(tmp_path):
    # quoted, indented email lines: collapsing keeps the first space of each run and drops the rest
    quoted = "Here's the head:\n>    5007 x86\n>    3943 Staging\n>    3220 USB\n>    2790 sh\n"
    corpus, (doc_id,) = build_case(tmp_path / "runs.sqlite", ["Intro line.\n" + quoted + "Thanks.\n"])
    text = corpus.text_of(doc_id)
    start, end = text.index("the head"), text.index(" sh") + 3
    built = PromptBuilder().say("## ").quote(corpus, doc_id, start, end, lambda t: " ".join(t.split()))
    (span,) = attribute(built.say(" ##").prompt, corpus)
    assert (span.start, span.end, span.normalized) == (start, end, True)
    assert coverage([span], built) == (1.0, 0)


def test_excerpts_cut_mid_word(small):
    corpus, ids = small
    email = corpus.text_of(ids["email"])
    start = email.index("sent invoice") + 2  # "nt invoice ..."
    end = email.index("finance office") + 5  # "... finan"
    prompt = f"Fragment: [{email[start:end]}] -- what is missing?"
    (span,) = attribute(prompt, corpus)
    assert (span.doc_id, span.start, span.end) == (ids["email"], start, end)
    assert prompt[span.prompt_start - 1] == "[" and prompt[span.prompt_end] == "]"


def test_same_excerpt_twice_gives_two_spans(small):
    corpus, ids = small
    contract = corpus.text_of(ids["contract"])
    start = contract.index("Either party")
    end = contract.index(";\nfees")
    excerpt = contract[start:end]
    prompt = f"First: {excerpt}\nAgain: {excerpt}\nAre these the same?"
    spans = attribute(prompt, corpus)
    assert [(s.doc_id, s.start, s.end) for s in spans] == [(ids["contract"], start, end)] * 2
    assert spans[0].prompt_end < spans[1].prompt_start


def test_prompt_without_source_text(small):
    corpus, _ = small
    prompt = (
        "Please list every obligation you can find and rate its risk from 1 to 5.\n"
        'Respond as JSON: {"items": [...]} and do not invent facts.\n' * 3
    )
    assert attribute(prompt, corpus) == []
    assert attribute("", corpus) == []
    assert attribute("the agreement", corpus) == []  # in the corpus, but shorter than min_len


def test_fts_special_characters_in_source_text(small):
    corpus, ids = small
    special = corpus.text_of(ids["special"])
    for line in special.splitlines():
        prompt = f"Explain this line:\n{line}\nThanks."
        (span,) = attribute(prompt, corpus)
        assert corpus.text_of(span.doc_id)[span.start : span.end] == line
        assert span.doc_id == ids["special"]
    # pieces starting inside the syntax characters, too
    piece = special[special.index("(x*y)") : special.index("{braces}")]
    (span,) = attribute(f"Q: {piece}?", corpus)
    assert special[span.start : span.end] == piece.rstrip()


@pytest.mark.parametrize("text", [GREEK.strip(), RUSSIAN.strip(), JAPANESE.strip()], ids=["el", "ru", "ja"])
def test_non_latin_text(small, text):
    corpus, ids = small
    foreign = corpus.text_of(ids["foreign"])
    prompt = f"Translate into English:\n{text}\nKeep the dates exact."
    (span,) = attribute(prompt, corpus)
    assert (span.doc_id, span.start, span.end) == (
        ids["foreign"],
        foreign.index(text),
        foreign.index(text) + len(text),
    )


def test_japanese_excerpt_cut_inside_a_sentence(small):
    corpus, ids = small
    foreign = corpus.text_of(ids["foreign"])
    start = foreign.index("報酬は")
    end = foreign.index("銀行振込")
    (span,) = attribute(f"要約してください：「{foreign[start:end]}」", corpus)
    assert (span.start, span.end) == (start, end)


def test_long_unsegmented_run_falls_back_to_a_scan(tmp_path):
    # unicode61 makes one FTS token of a whole CJK run, so a slice from its middle has no whole token
    run = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥" * 4
    corpus, (doc_id,) = build_case(tmp_path / "cjk.sqlite", [f"前文。{run}。後文。"])
    text = corpus.text_of(doc_id)
    start = text.index(run) + 5
    excerpt = text[start : start + 60]
    (span,) = attribute(f"翻訳：{excerpt}", corpus)
    assert (span.doc_id, span.start, span.end) == (doc_id, start, start + 60)


def test_case_is_not_normalised(small):
    corpus, ids = small
    contract = corpus.text_of(ids["contract"])
    line = contract[contract.index("2. Fees.") : contract.index(" invoiced")]
    assert attribute(f"Shouting: {line.upper()}", corpus) == []
    (span,) = attribute(f"Normal: {line}", corpus)
    assert contract[span.start : span.end] == line


def test_duplicates_prefer_continuing_document_then_lowest_id(tmp_path):
    first = "Alpha document opening words. " + DUPLICATE + " Alpha closing remarks follow here."
    second = "Beta document opening lines!! " + DUPLICATE + " Beta closing remarks are different."
    corpus, (a, b) = build_case(tmp_path / "dup.sqlite", [first, second])
    (span,) = attribute(f"Note: {DUPLICATE}\n", corpus)
    assert span.doc_id == a  # the lowest id wins a tie
    # after a span of document b, the duplicate sentence is attributed to b, which it continues
    beta_intro = "Beta document opening lines!!"
    spans = attribute(f"{beta_intro}\n(snip)\n{DUPLICATE}\n", corpus)
    assert [s.doc_id for s in spans] == [b, b]
    # a longer agreement beats the tie-break
    (span,) = attribute(f"Q: {DUPLICATE} Beta closing remarks", corpus)
    assert span.doc_id == b


def test_subset_corpus_attributes_only_its_documents(tmp_path):
    corpus, (a, b) = build_case(tmp_path / "sub.sqlite", [CONTRACT, CONTRACT.replace("Acme", "Zenith")])
    subset = Corpus.open(tmp_path / "sub.sqlite", doc_ids=[b])
    line = "Either party may terminate this agreement with ninety days written notice"
    assert attribute(line, corpus)[0].doc_id == a
    assert attribute(line, subset)[0].doc_id == b


def synthetic_texts(rng: random.Random, n_docs: int, words_per_doc: int) -> list[str]:
    """Zipf-distributed pseudo-words in sentences and paragraphs: realistic repetition of common phrases."""
    vocab = ["the", "of", "and", "to", "a", "in", "that", "is", "for", "it", "was", "on", "with"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab += ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    texts = []
    for _ in range(n_docs):
        words = rng.choices(vocab, weights, k=words_per_doc)
        out, i = [], 0
        while i < len(words):
            k = rng.randint(5, 20)
            sentence = " ".join(words[i : i + k])
            out.append(sentence[0].upper() + sentence[1:] + rng.choice(".;?!,"))
            out.append(rng.choice(["  ", " ", " ", "\n", "\n\n", "\t"]))
            i += k
        texts.append("".join(out))
    return texts


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    rng = random.Random(2024)
    path = tmp_path_factory.mktemp("synthetic") / "case.sqlite"
    corpus, ids = build_case(path, synthetic_texts(rng, 800, 1500))
    return corpus, ids


TRANSFORMS = [None, None, lambda t: " ".join(t.split()), lambda t: t.replace("\n", " ")]


def random_prompt(rng: random.Random, corpus: Corpus, ids: list[int]) -> PromptBuilder:
    """Instructions, numbered excerpts (some collapsed, some joined chunk lists, some repeated), a question."""
    built = PromptBuilder().say("### Task ###\nRead the excerpts and list every payment (amount, date).\n\n")
    excerpts: list[tuple[int, int, int]] = []
    for number in range(10):
        built.say(f"### Excerpt {number + 1} ###\n")
        if excerpts and rng.random() < 0.1:
            doc_id, start, end = rng.choice(excerpts)  # the same excerpt again
        else:
            doc_id = rng.choice(ids)
            text = corpus.text_of(doc_id)
            start = rng.randrange(0, len(text) - 2500)
            end = start + rng.randint(200, 1800)  # usually mid-word at both ends
            excerpts.append((doc_id, start, end))
        built.quote(corpus, doc_id, start, end, rng.choice(TRANSFORMS))
        built.say("\n\n")
    built.say("### Question ###\nWhich excerpts disagree with each other? Answer in JSON.")
    return built


def test_coverage_on_model_like_prompts(synthetic):
    corpus, ids = synthetic
    rng = random.Random(5)
    attributor = Attributor(corpus)
    total_false, shares = 0, []
    for _ in range(25):
        built = random_prompt(rng, corpus, ids)
        spans = attributor.attribute(built.prompt)
        assert_exact(spans, built.prompt, corpus)
        share, false = coverage(spans, built)
        shares.append(share)
        total_false += false
    assert total_false == 0
    assert min(shares) >= 0.99
    assert sum(shares) / len(shares) >= 0.995


def test_speed_and_thread_use(synthetic):
    corpus, ids = synthetic
    rng = random.Random(9)
    prompts = [random_prompt(rng, corpus, ids).prompt for _ in range(10)]
    attributor = Attributor(corpus)
    results: dict[int, list[SourceSpan]] = {}

    def work(k: int) -> None:
        results[k] = attributor.attribute(prompts[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(prompts))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    per_prompt = (time.perf_counter() - started) / len(prompts)
    assert per_prompt < 0.25, f"{per_prompt * 1000:.0f} ms per prompt"  # ~10 ms here; generous for slow CI
    assert all(results[k] == attributor.attribute(prompts[k]) for k in range(len(prompts)))
    assert all(len(results[k]) >= 10 for k in range(len(prompts)))


def test_phrase_search_finds_what_the_whitespace_regex_finds():
    """The str.find phrase matcher (no regex compiled per probe) agrees with `word\\s+word...` everywhere."""
    import random
    import re

    from rlm_desktop.engine.provenance import _Phrase

    rng = random.Random(15)
    words = ["ab", "a", "b", "ba", "abab", "é", "x.y", "(b)"]
    spaces = [" ", "  ", "\n", "\t ", "\u00a0", "\u2003", ""]
    for _ in range(3000):
        text = "".join(rng.choice(words) + rng.choice(spaces) for _ in range(rng.randint(0, 30)))
        piece = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
        regex = re.compile(r"\s+".join(re.escape(part) for part in piece.split()))
        pos = rng.randint(0, max(0, len(text) - 1))
        endpos = rng.choice([None, rng.randint(pos, len(text) + 3)])
        expected = [
            (m.start(), m.end())
            for m in (regex.finditer(text, pos) if endpos is None else regex.finditer(text, pos, endpos))
        ]
        assert [(m.start(), m.end()) for m in _Phrase(piece).finditer(text, pos, endpos)] == expected
        first = _Phrase(piece).search(text, pos, endpos)
        assert (first.start() if first else None) == (expected[0][0] if expected else None)
