from eval._text import bigrams, coverage, split_sentences, stem, tokenize


def test_split_sentences_handles_glued_paragraphs_and_speaker_tags():
    text = "Arthur's Magazine was published in Philadelphia.First for Women is published by Bauer."
    assert split_sentences(text) == [
        "Arthur's Magazine was published in Philadelphia.",
        "First for Women is published by Bauer.",
    ]
    assert split_sentences("[Human]: Do you like it? [Assistant]: Sure. I do.") == [
        "Do you like it?",
        "Sure.",
        "I do.",
    ]
    assert split_sentences("   ") == []


def test_stem_is_light():
    assert stem("Companies") == "company"
    assert stem("hotels") == "hotel"
    assert stem("glass") == "glass"
    assert stem("Oberoi's") == "oberoi"
    assert stem("starred") == "starr"


def test_tokenize_content_numbers_names():
    t = tokenize("The Oberoi Group has 31 hotels in Delhi.")
    assert t.content == ("oberoi", "group", "31", "hotel", "delhi")
    assert t.numbers == frozenset({"31"})
    assert t.names == frozenset({"oberoi", "group", "delhi"})  # "The" starts the sentence
    assert tokenize("It cost 1,200 dollars.").numbers == frozenset({"1200"})
    # HaluEval's knowledge glues entities together; a capital after a lower-case letter splits them.
    glued = tokenize("Little Women is written by Louisa May AlcottLouisa May Alcott is a/an Writer")
    assert glued.content.count("alcott") == 2 and glued.content.count("louisa") == 2
    assert {"alcott", "louisa", "writer"} <= glued.names


def test_coverage_and_bigrams():
    assert coverage({"a", "b"}, {"a"}) == 0.5
    assert coverage(set(), {"a"}) == 1.0
    assert coverage(set(), {"a"}, empty=0.0) == 0.0
    assert bigrams(("a", "b", "c")) == {("a", "b"), ("b", "c")}
