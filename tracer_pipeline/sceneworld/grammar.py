"""The SceneWorld grammar: scenes, their captions, and the parser that reads captions back.

A scene is one to three objects on a plain grey background. Each object has a shape, a colour,
a size and a position, and no two objects share a position. Captions come from a small template
family with synonyms and word-order variation (so learned models must generalise rather than
memorise one sentence per scene); :func:`canonical_caption` is the one fixed form, and
:func:`parse_caption` turns any caption in the family (or near it) back into objects, which is how
model outputs are scored.

Pure Python and numpy: importing this module never imports torch.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black")
SIZES = ("small", "large")
# Ordered left to right, then top to bottom: the order of objects in a canonical caption.
POSITIONS = ("left", "top", "centre", "bottom", "right")
MAX_OBJECTS = 3

# Words a caption may use for each value; the first is the canonical one.
SHAPE_WORDS = {
    "circle": ("circle", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross", "plus"),
}
COLOUR_WORDS = {
    "red": ("red", "scarlet"),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
    "white": ("white",),
    "black": ("black",),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
POSITION_PHRASES = {
    "left": ("on the left", "to the left", "at the left"),
    "right": ("on the right", "to the right", "at the right"),
    "top": ("at the top", "near the top", "on top"),
    "bottom": ("at the bottom", "near the bottom", "along the bottom"),
    "centre": ("in the centre", "in the center", "in the middle"),
}
# The word in a position phrase that names the position (the rest is "on the", "at the", ...).
POSITION_KEYWORDS = {
    "left": "left", "right": "right", "top": "top", "bottom": "bottom",
    "centre": "centre", "center": "centre", "middle": "centre",
}
PREFIXES = ("", "a picture of ", "an image of ", "a drawing of ")
EXISTENTIALS = ("there is", "is", "sits", "we see")

_SHAPE_OF = {w: s for s, words in SHAPE_WORDS.items() for w in words}
_COLOUR_OF = {w: c for c, words in COLOUR_WORDS.items() for w in words}
_SIZE_OF = {w: z for z, words in SIZE_WORDS.items() for w in words}
# Words that end one object's clause: the parser splits on them, and so does SceneT2I.
CLAUSE_SEPARATORS = (",", "and", "with")
_TOKEN = re.compile(r"[a-z]+|,")


@dataclass(frozen=True, order=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    position: str

    def phrase(self) -> str:
        """The canonical noun phrase, e.g. ``a large red circle on the left``."""
        return f"a {self.size} {self.colour} {self.shape} {POSITION_PHRASES[self.position][0]}"


@dataclass(frozen=True)
class Scene:
    """One to three objects at distinct positions, kept in canonical (position) order."""

    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise ValueError(f"a scene has 1 to {MAX_OBJECTS} objects, not {len(self.objects)}")
        positions = [o.position for o in self.objects]
        if len(set(positions)) != len(positions):
            raise ValueError(f"two objects share a position: {positions}")
        for o in self.objects:
            if (o.shape not in SHAPES or o.colour not in COLOURS or o.size not in SIZES
                    or o.position not in POSITIONS):
                raise ValueError(f"not in the SceneWorld grammar: {o}")
        ordered = tuple(sorted(self.objects, key=lambda o: POSITIONS.index(o.position)))
        object.__setattr__(self, "objects", ordered)

    def shapes_and_colours(self) -> Counter[tuple[str, str]]:
        return Counter((o.shape, o.colour) for o in self.objects)


@dataclass(frozen=True)
class ParsedObject:
    """An object read from a caption; attributes the caption does not give are ``None``."""

    shape: str
    colour: str | None
    size: str | None
    position: str | None


def canonical_caption(scene: Scene) -> str:
    """The one fixed caption of a scene: objects in position order, canonical words."""
    phrases = [o.phrase() for o in scene.objects]
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def varied_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A caption drawn from the template family: any object order, synonyms, and the position
    phrase before or after its object."""
    order = rng.permutation(len(scene.objects))
    clauses = []
    for i, index in enumerate(order):
        o = scene.objects[index]
        size = _choice(rng, SIZE_WORDS[o.size])
        colour = _choice(rng, COLOUR_WORDS[o.colour])
        shape = _choice(rng, SHAPE_WORDS[o.shape])
        where = _choice(rng, POSITION_PHRASES[o.position])
        adjectives = f"{size} {colour}" if rng.random() < 0.8 else f"{colour} {size}"
        noun = f"a {adjectives} {shape}"
        if i > 0 and rng.random() < 0.3:
            clauses.append(f"{where} {_choice(rng, EXISTENTIALS)} {noun}")
        else:
            clauses.append(f"{noun} {where}")
    text = clauses[0]
    for i, clause in enumerate(clauses[1:], start=1):
        last = i == len(clauses) - 1
        joiner = _choice(rng, (" and ", ", and ", " with ")) if last else _choice(rng, (", ", " and "))
        text += joiner + clause
    return _choice(rng, PREFIXES) + text


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def tokenize_words(text: str) -> list[str]:
    """Lower-case words and commas: the unit every SceneWorld model and the parser work in."""
    return _TOKEN.findall(text.lower())


def parse_caption(text: str) -> list[ParsedObject]:
    """Read the objects a caption describes.

    The caption is split into clauses at ``,``, ``and`` and ``with``; a clause that names a shape
    is one object, and the colour, size and position words in the same clause are its
    attributes. Words outside the grammar are ignored, so a caption that is partly wrong still
    yields what it does say.
    """
    clauses: list[list[str]] = [[]]
    for word in tokenize_words(text):
        if word in CLAUSE_SEPARATORS:
            clauses.append([])
        else:
            clauses[-1].append(word)
    objects = []
    for words in clauses:
        shapes = [_SHAPE_OF[w] for w in words if w in _SHAPE_OF]
        if not shapes:
            continue
        objects.append(ParsedObject(
            shape=shapes[0],
            colour=next((_COLOUR_OF[w] for w in words if w in _COLOUR_OF), None),
            size=next((_SIZE_OF[w] for w in words if w in _SIZE_OF), None),
            position=next((POSITION_KEYWORDS[w] for w in words if w in POSITION_KEYWORDS), None),
        ))
    return objects


def caption_matches(caption: str, scene: Scene) -> bool:
    """Whether a caption names exactly the scene's objects by shape and colour (as a multiset):
    the quality bar's definition of a caption that recovers the scene."""
    parsed = Counter((o.shape, o.colour) for o in parse_caption(caption))
    return parsed == scene.shapes_and_colours()


def caption_matches_exactly(caption: str, scene: Scene) -> bool:
    """Whether a caption names every object's shape, colour, size and position."""
    parsed = Counter((o.shape, o.colour, o.size, o.position) for o in parse_caption(caption))
    return parsed == Counter((o.shape, o.colour, o.size, o.position) for o in scene.objects)


def scene_from_caption(text: str) -> Scene | None:
    """The scene a caption fully describes, or ``None`` if it leaves anything out."""
    parsed = parse_caption(text)
    try:
        return Scene(tuple(
            SceneObject(o.shape, o.colour, o.size, o.position)  # type: ignore[arg-type]
            for o in parsed
        ))
    except (ValueError, TypeError):
        return None


def is_held_out(scene: Scene) -> bool:
    """One scene in eight, chosen by a hash of its canonical caption, is never trained on:
    quality figures are measured on these only."""
    digest = hashlib.sha256(canonical_caption(scene).encode("utf-8")).digest()
    return digest[0] % 8 == 0


def random_scene(rng: np.random.Generator, held_out: bool | None = False) -> Scene:
    """A uniformly random scene (1–3 objects); ``held_out`` restricts it to the held-out split
    (``True``), the training split (``False``), or neither (``None``)."""
    while True:
        n = int(rng.integers(1, MAX_OBJECTS + 1))
        positions = rng.choice(len(POSITIONS), size=n, replace=False)
        scene = Scene(tuple(
            SceneObject(
                shape=SHAPES[int(rng.integers(len(SHAPES)))],
                colour=COLOURS[int(rng.integers(len(COLOURS)))],
                size=SIZES[int(rng.integers(len(SIZES)))],
                position=POSITIONS[int(p)],
            )
            for p in positions
        ))
        if held_out is None or is_held_out(scene) == held_out:
            return scene


def vocabulary() -> list[str]:
    """Every word a caption in the template family can contain, sorted."""
    words: set[str] = {",", "a", "an", "of"}
    for table in (SHAPE_WORDS, COLOUR_WORDS, SIZE_WORDS, POSITION_PHRASES):
        for phrases in table.values():
            for phrase in phrases:
                words.update(tokenize_words(phrase))
    for phrase in (*PREFIXES, *EXISTENTIALS, "and with"):
        words.update(tokenize_words(phrase))
    return sorted(words)
