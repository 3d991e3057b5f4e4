"""The words of the synthetic library: captions composed from subjects, scenes, styles and colours,
and the natural-language queries people type about them, ranked for a Zipf sampler.

Every subject and scene carries the plainer words a person searches with ("puppy", "beach") beside
the caption's wording ("golden retriever", "on a sandy beach"), so MiniLM has real semantic matches
to find and the hashing embedder has lexical ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Term:
    phrase: str  # as written in captions
    queries: tuple[str, ...]  # as people search for it


SUBJECTS: tuple[Term, ...] = (
    Term("golden retriever puppy", ("puppy", "dog", "golden retriever")),
    Term("border collie", ("dog", "sheepdog", "collie")),
    Term("tabby cat", ("cat", "kitten", "tabby")),
    Term("black cat", ("cat", "black cat")),
    Term("horse", ("horse", "pony")),
    Term("flock of sheep", ("sheep", "lambs")),
    Term("red fox", ("fox", "wildlife")),
    Term("humpback whale", ("whale", "ocean wildlife")),
    Term("parrot", ("bird", "parrot")),
    Term("bald eagle", ("eagle", "bird of prey")),
    Term("toddler", ("kid", "child", "baby")),
    Term("group of friends", ("friends", "people")),
    Term("bride and groom", ("wedding", "couple")),
    Term("grandmother", ("grandma", "family")),
    Term("street musician", ("musician", "guitar player")),
    Term("surfer", ("surfing", "surfer")),
    Term("mountain biker", ("mountain bike", "cycling")),
    Term("skier", ("skiing", "ski")),
    Term("marathon runner", ("running", "runner")),
    Term("vintage car", ("classic car", "old car")),
    Term("sailboat", ("boat", "sailing")),
    Term("steam train", ("train", "railway")),
    Term("hot air balloon", ("balloon", "hot air balloon")),
    Term("city skyline", ("skyline", "city")),
    Term("lighthouse", ("lighthouse", "coast")),
    Term("old stone bridge", ("bridge", "stone bridge")),
    Term("gothic cathedral", ("cathedral", "church")),
    Term("waterfall", ("waterfall", "falls")),
    Term("mountain lake", ("lake", "mountains")),
    Term("field of sunflowers", ("sunflowers", "flowers")),
    Term("cherry blossom tree", ("cherry blossom", "sakura", "spring flowers")),
    Term("birthday cake", ("cake", "birthday")),
    Term("bowl of ramen", ("ramen", "noodles", "food")),
    Term("wood-fired pizza", ("pizza", "food")),
    Term("cup of coffee", ("coffee", "latte")),
    Term("christmas tree", ("christmas", "holiday decorations")),
    Term("fireworks display", ("fireworks", "new year")),
    Term("campfire", ("campfire", "camping")),
    Term("tent", ("camping", "tent")),
    Term("laptop on a desk", ("laptop", "workspace", "desk setup")),
)

SCENES: tuple[Term, ...] = (  # the first query reads after a subject: "dog on the beach"
    Term("on a sandy beach", ("on the beach", "beach", "seaside")),
    Term("in a snowy forest", ("in the snow", "snow", "winter forest")),
    Term("in a busy city street", ("in the city", "city street", "downtown")),
    Term("at a night market", ("at a night market", "night market", "street food")),
    Term("in a sunny park", ("in the park", "park")),
    Term("by a quiet lake", ("by the lake", "lake", "lakeside")),
    Term("in the mountains", ("in the mountains", "mountains", "hiking")),
    Term("in a cozy living room", ("at home", "living room", "indoors")),
    Term("in a modern kitchen", ("in the kitchen", "kitchen", "cooking")),
    Term("in the backyard", ("in the backyard", "backyard", "garden")),
    Term("at a rock concert", ("at a concert", "concert", "live music")),
    Term("in a desert canyon", ("in the desert", "desert", "canyon")),
    Term("on a rainy sidewalk", ("in the rain", "rain", "rainy day")),
    Term("in a flower garden", ("in the garden", "garden", "flowers")),
    Term("at a harbor", ("at the harbor", "harbor", "marina")),
    Term("in an old library", ("in a library", "library", "books")),
    Term("at a farmers market", ("at the market", "farmers market", "market")),
    Term("under the northern lights", ("under the northern lights", "northern lights", "aurora")),
    Term("in a foggy meadow", ("in the fog", "fog", "misty meadow")),
    Term("at a wedding reception", ("at a wedding", "wedding", "party")),
    Term("at a stadium", ("at the stadium", "stadium", "sports")),
    Term("in a tropical jungle", ("in the jungle", "jungle", "rainforest")),
    Term("on a frozen lake", ("on the ice", "ice", "frozen lake")),
    Term("at sunset on a rooftop", ("on a rooftop at sunset", "sunset", "rooftop")),
)

STYLES: tuple[Term, ...] = (
    Term("candid photo", ("photo", "candid")),
    Term("portrait", ("portrait",)),
    Term("aerial drone shot", ("drone shot", "aerial view", "from above")),
    Term("black and white photo", ("black and white", "monochrome")),
    Term("macro close-up", ("close-up", "macro")),
    Term("long exposure shot", ("long exposure", "night photo")),
    Term("vintage film photo", ("film photo", "vintage", "retro")),
    Term("wide-angle landscape", ("landscape", "panorama")),
    Term("blurry phone snapshot", ("snapshot", "blurry")),
    Term("golden hour photo", ("golden hour", "sunset light")),
    Term("HDR photo", ("hdr",)),
    Term("selfie", ("selfie",)),
)

COLOURS: tuple[str, ...] = (
    "red", "orange", "golden", "yellow", "green", "teal", "blue", "navy", "purple", "pink", "white",
    "black", "grey", "brown",
)  # fmt: skip

DOCUMENTS: tuple[Term, ...] = (
    Term("scanned receipt", ("receipt", "expenses")),
    Term("boarding pass", ("boarding pass", "flight", "travel documents")),
    Term("handwritten recipe card", ("recipe", "handwritten note")),
    Term("utility bill", ("bill", "invoice")),
    Term("concert ticket", ("ticket", "concert ticket")),
    Term("whiteboard sketch", ("whiteboard", "meeting notes")),
)

AUDIO: tuple[Term, ...] = (
    Term("voice memo", ("voice memo", "recording")),
    Term("birdsong recording", ("birdsong", "nature sounds")),
    Term("band rehearsal recording", ("rehearsal", "music recording")),
)

_CAPTION_TEMPLATES = (
    "a {colour} {subject} {scene}, {style}",
    "{style} of a {colour} {subject} {scene}",
    "{subject} {scene}, {colour} tones, {style}",
)


def caption_for(rng: np.random.Generator, media_type: str) -> tuple[str, tuple[str, ...]]:
    """A caption and its tags for one item of `media_type`."""
    if media_type == "document":
        doc = DOCUMENTS[rng.integers(len(DOCUMENTS))]
        colour = COLOURS[rng.integers(len(COLOURS))]
        return f"{doc.phrase} on a {colour} background", (doc.queries[0], "document")
    subject = SUBJECTS[rng.integers(len(SUBJECTS))]
    scene = SCENES[rng.integers(len(SCENES))]
    if media_type == "audio":
        clip = AUDIO[rng.integers(len(AUDIO))]
        return f"{clip.phrase} of a {subject.phrase} {scene.phrase}", (clip.queries[0], subject.queries[0])
    style = STYLES[rng.integers(len(STYLES))]
    colour = COLOURS[rng.integers(len(COLOURS))]
    template = _CAPTION_TEMPLATES[rng.integers(len(_CAPTION_TEMPLATES))]
    if media_type == "video":
        template = "video clip: " + template
    caption = template.format(colour=colour, subject=subject.phrase, scene=scene.phrase, style=style.phrase)
    return caption, (subject.queries[0], scene.queries[1], style.queries[0], colour)


class QueryVocabulary:
    """Search queries about the library, most popular first: plain subjects, then subject + scene,
    colour + subject, style + subject, and documents. The order inside each tier comes from `seed`."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, 7919])
        tiers: list[list[str]] = [
            [q for t in SUBJECTS for q in t.queries] + [t.queries[1] for t in SCENES],
            [f"{s.queries[0]} {sc.queries[0]}" for s in SUBJECTS for sc in SCENES],
            [f"{c} {s.queries[0]}" for s in SUBJECTS for c in COLOURS]
            + [f"{s.queries[0]} {st.queries[0]}" for s in SUBJECTS for st in STYLES],
            [q for t in DOCUMENTS + AUDIO for q in t.queries],
        ]
        ranked: list[str] = []
        for tier in tiers:
            ranked += [tier[i] for i in rng.permutation(len(tier))]
        self.queries: tuple[str, ...] = tuple(dict.fromkeys(ranked))

    def __len__(self) -> int:
        return len(self.queries)


class ZipfQuerySampler:
    """Draws queries with probability proportional to 1 / rank**s (a bounded Zipf law, as real search
    logs show): the head repeats a lot, which is what a search cache lives on. Reproducible per seed."""

    def __init__(self, seed: int = 0, *, s: float = 1.1, vocabulary: QueryVocabulary | None = None) -> None:
        if s <= 0:
            raise ValueError("the Zipf exponent s must be positive")
        self.vocabulary = vocabulary or QueryVocabulary(seed)
        ranks = np.arange(1, len(self.vocabulary) + 1, dtype=np.float64)
        weights = ranks**-s
        self.probabilities = weights / weights.sum()
        self._rng = np.random.default_rng([seed, 104729])

    def sample(self, n: int) -> list[str]:
        idx = self._rng.choice(len(self.probabilities), size=n, p=self.probabilities)
        return [self.vocabulary.queries[i] for i in idx]

    def __iter__(self) -> Iterator[str]:
        while True:
            yield from self.sample(256)
