"""Tokens and lookup keys shared by the taxonomy build and the runtime lookup.

A lookup key is the lower-cased concatenation of a phrase's tokens, with no spaces or
punctuation, so "Node.js", "node js" and "NodeJS" share the key ``nodejs`` and "CI/CD"
becomes ``cicd``. Three rules keep technology names apart:

* ``+`` and ``#`` stay attached to the word they follow, so ``C++``, ``C#`` and ``C``
  are three different keys;
* a ``.net`` that does not follow a letter or digit is the token ``dotnet`` (".NET",
  ".Net Core"), so it cannot collide with the English word "net";
* everything else that is not a letter or a digit separates tokens.

The build and the lookup must use these exact functions; a change here needs a rebuild
of ``taxonomy/data``.
"""

from __future__ import annotations

import re
import unicodedata

# A word, with a leading dot captured so that ".net" can be told apart (one alternative
# only: this regex runs over every document and alternations cost).
_TOKEN_RE = re.compile(r"\.?[^\W_]+[+#]*")

Token = tuple[int, int, str]
"""(start, end, key) of one token; ``text[start:end]`` is its surface form."""


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into lookup tokens with their character offsets.

    Args:
        text: any text; offsets refer to this exact string.

    Returns:
        One ``(start, end, key)`` per token, ``key`` lower-cased ("dotnet" for ".NET").
    """
    ascii_text = text.isascii()
    # Lower-casing ASCII keeps every offset, so the keys come straight from the matches.
    source = text.lower() if ascii_text else text
    out: list[Token] = []
    append = out.append
    for m in _TOKEN_RE.finditer(source):
        key = m.group()
        start = m.start()
        if key[0] == ".":
            if key == ".net" or (not ascii_text and key.lower() == ".net"):
                if start == 0 or not text[start - 1].isalnum():
                    append((start, m.end(), "dotnet"))
                    continue
            key = key[1:]
            start += 1
        if not ascii_text:
            key = fold_accents(key).lower()
        append((start, m.end(), key))
    return out


def fold_accents(text: str) -> str:
    """Strip combining accents ("Résumé" -> "Resume") so keys do not depend on them."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def phrase_tokens(text: str) -> list[str]:
    """The token keys of a phrase (accents folded), e.g. ``"Node.js"`` -> ``["node", "js"]``."""
    return [key for _, _, key in tokenize(text)]


def lookup_key(text: str) -> str:
    """The lookup key of a phrase: its token keys concatenated ("CI/CD" -> "cicd")."""
    return "".join(phrase_tokens(text))
