"""Label and field selectors as the API server understands them, for list and watch requests.

Supports the subset that operators and kubectl use: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
`a` (exists) and `!a` (absent); field selectors on `metadata.name` and `metadata.namespace`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([\w./-]+)\s*(==|!=|=)\s*([\w./-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([\w./-]+)\s*$")
_FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


class SelectorError(ValueError):
    """A selector the emulator cannot parse; answered as 400 Bad Request, as a real server does."""


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside the parentheses of a set term."""
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, operator, raw_values = match.groups()
        values = {value.strip() for value in raw_values.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match.groups()
        if negated:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise SelectorError(f"unable to parse requirement: {term.strip()!r}")


def parse_label_selector(text: str | None) -> Predicate:
    """Return a predicate over an object's labels; an empty selector matches everything."""
    predicates = [_label_term(term) for term in _split_terms(text or "")]
    return lambda labels: all(predicate(labels) for predicate in predicates)


def parse_field_selector(text: str | None) -> Predicate:
    """Return a predicate over a whole object for `metadata.name` / `metadata.namespace` selectors."""
    predicates: list[Predicate] = []
    for term in _split_terms(text or ""):
        match = _EQ_TERM.match(term)
        if not match or match.group(1) not in _FIELDS:
            raise SelectorError(f"field label not supported: {term.strip()!r}")
        field, operator, value = match.groups()
        section, key = _FIELDS[field]
        negate = operator == "!="

        def predicate(obj: Mapping[str, Any], s: str = section, k: str = key, v: str = value, n: bool = negate) -> bool:
            actual = (obj.get(s) or {}).get(k) or ""
            return (actual != v) if n else (actual == v)

        predicates.append(predicate)
    return lambda obj: all(predicate(obj) for predicate in predicates)


def object_filter(label_selector: str | None, field_selector: str | None) -> Predicate:
    """Combine both selectors of a request into one predicate over whole objects."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    return lambda obj: labels((obj.get("metadata") or {}).get("labels") or {}) and fields(obj)
