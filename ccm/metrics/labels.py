# -*- test-case-name: tests.metrics.test_labels -*-
"""
The label values of ccm's metrics, kept to bounded sets: a client chooses
the model it names, so the model is folded to its family word, and any
other name to ``other``.  Users and credentials come from the
configuration already.
"""

from __future__ import annotations

#: The family words of Claude's models, as they appear in model ids.
MODEL_FAMILIES = ("fable", "mythos", "opus", "sonnet", "haiku")
#: The family of a model id that names none of :obj:`MODEL_FAMILIES`.
OTHER_MODEL = "other"


def model_family(model: str) -> str:
    """
    The model label of ``model``: the family word of a ``claude-`` model id
    (``claude-opus-4-5-20251101``: ``opus``; ``claude-3-5-haiku``:
    ``haiku``), :obj:`OTHER_MODEL` for any other id, and empty when the
    request named no model.
    """
    if not model:
        return ""
    words = model.lower().split("-")
    if words[0] == "claude":
        for family in MODEL_FAMILIES:
            if family in words:
                return family
    return OTHER_MODEL
