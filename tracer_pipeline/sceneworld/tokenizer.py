"""A word-level tokenizer shared by the three SceneWorld models.

Words outside the vocabulary become ``[UNK]``: a prompt that is not in the grammar still runs,
its unknown words are simply tokens the models have never been taught.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tracer_pipeline.sceneworld.grammar import tokenize_words, vocabulary

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"


class WordTokenizer:
    """Maps captions to fixed-length id sequences ``[BOS] words… [EOS] [PAD]…`` and back."""

    def __init__(self, words: Sequence[str], context_length: int = 32):
        self.tokens = [PAD, UNK, BOS, EOS, *words]
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.context_length = context_length
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = 0, 1, 2, 3

    @classmethod
    def for_grammar(cls, context_length: int = 32) -> WordTokenizer:
        return cls(vocabulary(), context_length)

    @classmethod
    def load(cls, path: Path) -> WordTokenizer:
        data = json.loads(path.read_text())
        return cls(data["tokens"][4:], data["context_length"])

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"tokens": self.tokens, "context_length": self.context_length},
                                   indent=1) + "\n")

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """``context_length`` ids; a caption too long for the context is cut, keeping ``[EOS]``."""
        words = [self.ids.get(w, self.unk_id) for w in tokenize_words(text)]
        ids = [self.bos_id, *words[: self.context_length - 2], self.eos_id]
        return ids + [self.pad_id] * (self.context_length - len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first ``[EOS]``, with special tokens dropped and commas attached."""
        words = []
        for i in ids:
            if i == self.eos_id:
                break
            if i >= 4:
                words.append(self.tokens[i])
        return " ".join(words).replace(" ,", ",")
