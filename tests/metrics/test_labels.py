"""
Tests for :obj:`ccm.metrics.labels`: model ids fold to a bounded set of
family words.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from ccm.metrics.labels import MODEL_FAMILIES, OTHER_MODEL, model_family


class ModelFamilyTests(SynchronousTestCase):
    """
    :obj:`model_family` keeps the label set bounded.
    """

    def test_families(self) -> None:
        """
        Claude model ids, dated or not, old word order or new, fold to
        their family word; a newer version of a family folds the same.
        """
        self.assertEqual(
            [
                model_family(model)
                for model in (
                    "claude-opus-4-5-20251101",
                    "claude-sonnet-4-5-20250929",
                    "claude-3-5-haiku-latest",
                    "claude-fable-5-2",
                    "claude-mythos-5",
                    "claude-opus-9-9",
                    "Claude-Sonnet-4",
                )
            ],
            ["opus", "sonnet", "haiku", "fable", "mythos", "opus", "sonnet"],
        )

    def test_other(self) -> None:
        """
        Any other id a client makes up is ``other``, and no model is empty:
        the label can take only :obj:`MODEL_FAMILIES`, ``other`` and ``""``.
        """
        folded = {
            model_family(model)
            for model in ("gpt-4o", "claude-instant-1", "opus", "x" * 500, "claude")
        }
        self.assertEqual(folded, {OTHER_MODEL})
        self.assertEqual(model_family(""), "")
        self.assertNotIn(OTHER_MODEL, MODEL_FAMILIES)
