"""Prompts as people write them: read a free-form prompt into the scene it asks for.

Captions (:mod:`.grammar`) name every attribute in a small template family; people write
"a red circle", "a crimson ball floating in the sky" or "a blue square on the left". A prompt is
read with a wider lexicon than captions use (plurals and more synonyms), words outside it are
ignored, and every attribute it leaves out — size, position, colour, even the shape of a prompt
that names none — is drawn from the seed, so one prompt and one seed always give the same scene
and different seeds give different scenes. SceneT2I draws the canonical caption of that scene.

The wider lexicon is read here only: captions, the tokenizer and the captioner's vocabulary stay
the template family's. Pure Python and numpy.
"""

from __future__ import annotations

import hashlib

import numpy as np

from tracer_pipeline.sceneworld.grammar import (
    CLAUSE_SEPARATORS,
    COLOUR_WORDS,
    COLOURS,
    MAX_OBJECTS,
    POSITION_KEYWORDS,
    POSITIONS,
    SHAPE_WORDS,
    SHAPES,
    SIZE_WORDS,
    SIZES,
    Scene,
    SceneObject,
    _choice,
    canonical_caption,
    tokenize_words,
)

# Words a prompt may use beyond the caption templates (which are read too).
EXTRA_SHAPE_WORDS = {
    "circle": ("circles", "discs", "dots", "disk", "ball", "balls", "ring", "orb", "sphere"),
    "square": ("squares", "boxes", "blocks", "cube", "tile"),
    "triangle": ("triangles", "pyramid", "wedge"),
    "star": ("stars", "starfish"),
    "diamond": ("diamonds", "lozenge", "kite"),
    "cross": ("crosses",),
}
EXTRA_COLOUR_WORDS = {
    "red": ("crimson", "ruby", "cherry"),
    "orange": ("amber", "tangerine"),
    "yellow": ("golden", "gold", "lemon"),
    "green": ("emerald", "lime", "olive"),
    "blue": ("navy", "azure", "cobalt"),
    "purple": ("lilac", "lavender", "mauve"),
    "pink": ("rose", "rosy", "salmon"),
    "white": ("ivory", "snowy"),
    "black": ("ebony", "jet"),
}
EXTRA_SIZE_WORDS = {"small": ("smaller", "mini", "miniature", "wee"),
                    "large": ("larger", "bigger", "giant", "enormous", "massive")}
EXTRA_POSITION_WORDS = {
    "left": ("leftmost",), "right": ("rightmost",), "top": ("upper", "topmost"),
    "bottom": ("lower", "bottommost"), "centre": ("central", "centred", "centered"),
}
# Words that end one object's description in a prompt, beyond the caption separators.
EXTRA_SEPARATORS = ("beside", "next", "while")
# A number before a shape asks for that many objects like it.
NUMBER_WORDS = {"two": 2, "three": 3}

_SHAPE_OF = {w: s for table in (SHAPE_WORDS, EXTRA_SHAPE_WORDS) for s, ws in table.items() for w in ws}
_COLOUR_OF = {w: c for table in (COLOUR_WORDS, EXTRA_COLOUR_WORDS) for c, ws in table.items() for w in ws}
_SIZE_OF = {w: z for table in (SIZE_WORDS, EXTRA_SIZE_WORDS) for z, ws in table.items() for w in ws}
_POSITION_OF = {**POSITION_KEYWORDS, **{w: p for p, ws in EXTRA_POSITION_WORDS.items() for w in ws}}
_SEPARATORS = frozenset((*CLAUSE_SEPARATORS, *EXTRA_SEPARATORS))
# The seed's own stream for attributes, apart from the stream that draws the jitter.
_PROMPT_STREAM = 0x5CE2E


def prompt_objects(text: str) -> list[dict[str, str | None]]:
    """The objects a prompt names, in its order, each as ``{shape, colour, size, position}`` with
    ``None`` for what it leaves out; words outside the lexicon are ignored.

    The prompt is cut into clauses at ``,``, ``and``, ``with``, ``beside``, ``next`` and ``while``;
    a clause naming several shapes is cut again after each shape, so "a red circle a blue square"
    is two objects. Attribute words belong to the shape they precede, and words after a clause's
    last shape ("… on the left") to that shape. "two" or "three" before a shape repeats the
    object (at a position of its own). Relations between objects ("beneath a …") are not read.
    The first :data:`~.grammar.MAX_OBJECTS` objects are kept; a prompt naming no shape is one
    object of unknown shape with the first colour, size and position words it has."""
    clauses: list[list[str]] = [[]]
    for word in tokenize_words(text):
        if word in _SEPARATORS:
            clauses.append([])
        else:
            clauses[-1].append(word)
    groups: list[list[str]] = []
    for words in clauses:
        cut: list[list[str]] = [[]]
        for word in words:
            cut[-1].append(word)
            if word in _SHAPE_OF:
                cut.append([])
        if len(cut) > 1:  # trailing words ("on the left") belong to the last shape
            cut[-2].extend(cut.pop())
        groups += [g for g in cut if any(w in _SHAPE_OF for w in g)]
    objects = []
    for group in groups or [tokenize_words(text)]:
        copies = next((NUMBER_WORDS[w] for w in group if w in NUMBER_WORDS), 1)
        described = {"shape": next((_SHAPE_OF[w] for w in group if w in _SHAPE_OF), None),
                     "colour": next((_COLOUR_OF[w] for w in group if w in _COLOUR_OF), None),
                     "size": next((_SIZE_OF[w] for w in group if w in _SIZE_OF), None),
                     "position": next((_POSITION_OF[w] for w in group if w in _POSITION_OF), None)}
        objects += [described, *({**described, "position": None} for _ in range(copies - 1))]
    return objects[:MAX_OBJECTS]


def prompt_scene(text: str, seed: int) -> Scene:
    """The scene a prompt asks for (:func:`prompt_objects`), with what it leaves out drawn from
    ``seed``.

    Shapes, colours and sizes are drawn for every object whether needed or not, so naming one
    attribute never changes what the seed draws for another. An object whose position is missing
    or already taken gets a free position, drawn by the seed."""
    rng = np.random.default_rng([_PROMPT_STREAM, seed])
    drawn_shapes = rng.integers(len(SHAPES), size=MAX_OBJECTS)
    drawn_colours = rng.integers(len(COLOURS), size=MAX_OBJECTS)
    drawn_sizes = rng.integers(len(SIZES), size=MAX_OBJECTS)
    free_order = [POSITIONS[int(i)] for i in rng.permutation(len(POSITIONS))]
    named = prompt_objects(text)
    positions: list[str | None] = []
    for o in named:
        positions.append(o["position"] if o["position"] not in positions else None)
    free = [p for p in free_order if p not in positions]
    return Scene(tuple(
        SceneObject(
            shape=o["shape"] or SHAPES[int(drawn_shapes[i])],
            colour=o["colour"] or COLOURS[int(drawn_colours[i])],
            size=o["size"] or SIZES[int(drawn_sizes[i])],
            position=positions[i] or free.pop(0),
        )
        for i, o in enumerate(named)
    ))


def prompt_caption(text: str, seed: int) -> str:
    """The canonical caption of :func:`prompt_scene`: what SceneT2I's network is given."""
    return canonical_caption(prompt_scene(text, seed))


# Words added to free-form prompts that name nothing in the scene. Training draws the first
# list; the held-out measurement uses the second, so its extra words are never seen in training.
FILLERS_TRAIN = ("floating in the air", "on a grey background", "drawn simply", "please",
                 "that looks nice", "in a picture", "resting quietly", "made of paper")
FILLERS_HELD_OUT = ("floating in the sky", "on a sunny day", "shining brightly", "very pretty",
                    "in the style of a cartoon", "sitting on a table")
# Prompts a person would write, measured by the benchmark and never drawn in training.
HAND_WRITTEN_PROMPTS = (
    "a red circle",
    "a small orange star",
    "a blue square on the left",
    "a green triangle floating in the sky",
    "a crimson ball next to a navy box",
    "two yellow stars",
    "a big pink diamond in the middle of the picture",
    "a tiny white cross at the top and a black circle",
    "a purple kite on the right, a golden cube on the left",
    "an emerald pyramid beneath a lilac orb",
    "a square",
    "a cat sleeping on a red sofa",
)


_HAND_WRITTEN = frozenset(" ".join(tokenize_words(p)) for p in HAND_WRITTEN_PROMPTS)


def is_held_out_prompt(text: str) -> bool:
    """Held-out prompts are never drawn in training: the hand-written ones and one prompt in
    eight by a hash of its words (the split :func:`~.grammar.is_held_out` makes for scenes)."""
    words = " ".join(tokenize_words(text))
    return words in _HAND_WRITTEN or hashlib.sha256(words.encode("utf-8")).digest()[0] % 8 == 0


def freeform_prompt(scene: Scene, rng: np.random.Generator, fillers: tuple[str, ...]) -> str:
    """A prompt for ``scene`` as a person might write it: each object may leave out its size
    (half the time), position (half), colour (one in six), words come from the wider lexicon
    as well as the templates, and an extra phrase from ``fillers`` is added one time in three."""
    clauses = []
    for i in rng.permutation(len(scene.objects)):
        o = scene.objects[int(i)]
        words = []
        if rng.random() < 0.5:
            words.append(_choice(rng, (*SIZE_WORDS[o.size], *EXTRA_SIZE_WORDS[o.size])))
        if rng.random() >= 1 / 6:
            words.append(_choice(rng, (*COLOUR_WORDS[o.colour], *EXTRA_COLOUR_WORDS[o.colour])))
        words.append(_choice(rng, (*SHAPE_WORDS[o.shape], *EXTRA_SHAPE_WORDS[o.shape])))
        clause = "a " + " ".join(words)
        if rng.random() < 0.5:
            clause += " " + _choice(rng, _POSITION_PHRASES_WIDE[o.position])
        clauses.append(clause)
    text = clauses[0] + "".join(_choice(rng, (" and ", ", ", " with ", " next to ")) + c
                                for c in clauses[1:])
    if rng.random() < 1 / 3:
        text += " " + _choice(rng, fillers)
    return text


_POSITION_PHRASES_WIDE = {
    "left": ("on the left", "to the left", "leftmost"),
    "right": ("on the right", "at the right", "rightmost"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "centre": ("in the centre", "in the middle", "central"),
}
