"""Natural-sentence negatives (data.n_sentences): the corpus reader, the draw, and the build."""
import pytest

FORTUNE = """Never eat at a place called Mom's.
%
The only way to correct this is to rewrite the program.  It was hard to write, it should be
hard to understand.
		-- Anonymous
%
BOB: Did you turn the computer off last night?
ALICE: I think so.
%
#include <stdio.h> int main() { return 0; }
%
Call 555-1234 before 9 pm!
%
Too short.
%
"""


@pytest.fixture
def corpus(tmp_path):
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "cookies").write_text(FORTUNE)
    (d / "cookies.dat").write_bytes(b"\x00\x01binary index")  # fortune's index files are not read
    (d / "plain.txt").write_text("People talk to each other all day long.\nThis line has the word computer in it.\n")
    return d


def test_corpus_sentences_reads_fortune_and_text_files(corpus, tmp_path):
    from wakeword.dataset.text import corpus_sentences

    got = corpus_sentences([str(corpus), str(tmp_path / "missing")])
    assert got == sorted(got) and len(got) == len(set(got))
    assert "Never eat at a place called Mom's." in got
    # an entry over two lines is joined and split into sentences; the attribution is left out
    assert "It was hard to write, it should be hard to understand." in got
    assert not any("Anonymous" in s for s in got)
    assert "Did you turn the computer off last night?" in got  # a dialogue's speaker label is dropped
    assert "People talk to each other all day long." in got
    # code, digits and symbols (read out unpredictably) and sentences under 3 words are left out
    assert not any(ch in s for s in got for ch in "#<>{}0123456789")
    assert "Too short." not in got
    assert corpus_sentences([str(tmp_path / "missing")]) == []
    assert corpus_sentences([str(tmp_path / "fort*")]) == got  # a pattern names the folder


def test_sentence_texts_never_say_the_phrase_and_do_not_depend_on_it(corpus):
    from wakeword.dataset.text import contains_phrase, corpus_sentences, sentence_texts

    sents = corpus_sentences([str(corpus)])
    a = sentence_texts("computer", 20, 0, sents)
    assert len(a) == 20 and a == sentence_texts("computer", 20, 0, sents)
    assert not any(contains_phrase(s, "computer") for s in a)
    assert set(a) == {s for s in sents if not contains_phrase(s, "computer")}  # cycles over the corpus
    b = sentence_texts("amelia", 20, 0, sents)
    assert set(b) == set(sents)  # no sentence says "amelia"
    assert sentence_texts("computer", 5, 0, []) == [] and sentence_texts("computer", 0, 0, sents) == []
    many = [f"Sentence number {w} is here." for w in ("one", "two", "three", "four", "five", "six")]
    assert len(set(sentence_texts("computer", 6, 0, many))) == 6  # without repeats while the corpus lasts
    assert sentence_texts("computer", 6, 0, many) != sentence_texts("computer", 6, 1, many)  # seeded


def test_build_adds_sentences_without_changing_existing_clips(corpus, tmp_path):
    from wakeword.dataset.build import DataConfig, build
    from wakeword.dataset.manifest import read_manifest
    from wakeword.dataset.text import contains_phrase

    out = tmp_path / "data"
    base = dict(phrase="computer", n_positive=4, n_adversarial=3, n_speech=2, n_noise=2, n_babble=0, n_words=2,
                engines=("espeak-ng",), sentence_corpora=(str(corpus),))
    build(DataConfig(**base), out, progress=False)
    before = {r.clip_id: r.sha256 for r in read_manifest(out)}
    build(DataConfig(**{**base, "n_sentences": 5}), out, progress=False)
    rows = read_manifest(out)
    after = {r.clip_id: r.sha256 for r in rows}
    assert all(after[k] == v for k, v in before.items())  # planned last: every other clip is unchanged
    sent = [r for r in rows if r.kind == "sentence"]
    assert len(sent) == 5 and all(r.label == 0 and not contains_phrase(r.text, "computer") for r in sent)
    assert all(r.duration_s > 0.5 for r in sent)


def test_sentences_without_a_corpus_make_none_and_say_so(tmp_path, caplog):
    from wakeword.dataset.build import DataConfig, plan

    cfg = DataConfig(phrase="computer", n_positive=2, n_adversarial=0, n_speech=0, n_noise=0, n_words=0,
                     n_sentences=10, engines=("espeak-ng",), sentence_corpora=(str(tmp_path / "nothing"),))
    with caplog.at_level("WARNING"):
        jobs = plan(cfg)
    assert not [j for j in jobs if j.kind == "sentence"] and [j for j in jobs if j.kind == "positive"]
    assert "no sentence corpus" in caplog.text


def test_val_only_kinds_are_validated_on_never_trained_on(tiny_data, tmp_path):
    from wakeword.dataset.manifest import read_manifest
    from wakeword.training.fit import TrainConfig, fit

    rows = read_manifest(tiny_data)
    n = {s: sum(r.split == s for r in rows) for s in ("train", "val")}
    speech_train = sum(r.split == "train" and r.kind == "speech" for r in rows)
    assert speech_train > 0
    base = dict(epochs=1, steps_per_epoch=1, batch_size=8, model={"width": 0.5})
    plain = fit(TrainConfig(**base), tiny_data, tmp_path / "plain", progress=False)
    held = fit(TrainConfig(**base, val_only_kinds=("speech",)), tiny_data, tmp_path / "held", progress=False)
    assert (plain["train_clips"], plain["val_clips"]) == (n["train"], n["val"])
    assert (held["train_clips"], held["val_clips"]) == (n["train"] - speech_train, n["val"] + speech_train)
    with pytest.raises(ValueError, match="val_only_kinds"):
        fit(TrainConfig(**base, val_only_kinds=("positive",)), tiny_data, tmp_path / "pos", progress=False)
    with pytest.raises(ValueError, match="val_only_kinds"):
        fit(TrainConfig(**base, val_only_kinds=("speeches",)), tiny_data, tmp_path / "typo", progress=False)
