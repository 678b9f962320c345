"""JSON nesting, measured before parsing: a parser recursing through thousands of levels
raises RecursionError (or spends the stack) on a few kilobytes of brackets."""

import re

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects any request may carry."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_nesting_exceeds(document: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `document` nests arrays and objects deeper than `limit`, brackets inside strings
    not counted. Malformed JSON is left for the parser to refuse."""
    if document.count("[") + document.count("{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", document)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
