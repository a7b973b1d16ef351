"""`--config 'label: key=value key=value'` arguments, shared by the benchmark scripts."""

from __future__ import annotations


def parse_config(text: str) -> tuple[str, list[str]]:
    """'label: a.b=1 c.d=x' → ('label', ['a.b=1', 'c.d=x']); the label may not contain ':'."""
    label, _, rest = text.partition(":")
    if not label.strip():
        raise SystemExit(f"--config {text!r}: give it a label, as 'label: key=value ...'")
    return label.strip(), rest.split()
